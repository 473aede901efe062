package grpclite

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/metadata"
)

// chunkPool holds the buffers of frames being read and of data queued for
// a handler: one frame's worth each.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, maxFrameSize)
	return &b
}}

// recvQueue is what a stream received and its handler has not read, in
// pooled chunks.
type recvQueue struct {
	chunks []*[]byte // data in (*chunk)[:len]; the first from off
	off    int
	n      int
}

func (q *recvQueue) push(p []byte) {
	for len(p) > 0 {
		if len(q.chunks) == 0 || len(*q.chunks[len(q.chunks)-1]) == maxFrameSize {
			b := chunkPool.Get().(*[]byte)
			*b = (*b)[:0]
			q.chunks = append(q.chunks, b)
		}
		t := q.chunks[len(q.chunks)-1]
		m := copy((*t)[len(*t):maxFrameSize], p)
		*t = (*t)[:len(*t)+m]
		p = p[m:]
		q.n += m
	}
}

func (q *recvQueue) pop(p []byte) int {
	n := 0
	for n < len(p) && len(q.chunks) > 0 {
		h := q.chunks[0]
		m := copy(p[n:], (*h)[q.off:])
		n += m
		q.off += m
		if q.off == len(*h) {
			*h = (*h)[:cap(*h)]
			chunkPool.Put(h)
			q.chunks[0] = nil
			q.chunks = q.chunks[1:]
			q.off = 0
		}
	}
	if len(q.chunks) == 0 {
		q.chunks = nil
	}
	q.n -= n
	return n
}

func (q *recvQueue) free() {
	for _, h := range q.chunks {
		*h = (*h)[:cap(*h)]
		chunkPool.Put(h)
	}
	*q = recvQueue{}
}

// contentSubtype parses a gRPC content-type: "application/grpc" with an
// optional "+subtype" or ";params".
func contentSubtype(ct string) (string, bool) {
	const base = "application/grpc"
	if ct == base {
		return "", true
	}
	if !strings.HasPrefix(ct, base) {
		return "", false
	}
	switch ct[len(base)] {
	case '+', ';':
		return ct[len(base)+1:], true
	}
	return "", false
}

func contentTypeOf(subtype string) string {
	if subtype == "" {
		return "application/grpc"
	}
	return "application/grpc+" + subtype
}

// reservedHeader: names gRPC uses itself, which are not metadata
// (:authority and user-agent are).
func reservedHeader(name string) bool {
	if name == ":authority" || name == "user-agent" {
		return false
	}
	if strings.HasPrefix(name, ":") {
		return true
	}
	switch name {
	case "content-type", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "te":
		return true
	}
	return false
}

func decodeMetadataHeader(k, v string) (string, error) {
	if !strings.HasSuffix(k, "-bin") {
		return v, nil
	}
	var b []byte
	var err error
	if len(v)%4 == 0 {
		b, err = base64.StdEncoding.DecodeString(v)
	} else {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	return string(b), err
}

func encodeBinHeader(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

func encodeMetadataHeader(k, v string) string {
	if strings.HasSuffix(k, "-bin") {
		return encodeBinHeader([]byte(v))
	}
	return v
}

// validateMD is grpc-go's check of metadata a handler sends.
func validateMD(md metadata.MD) error {
	for k, vv := range md {
		if k == "" {
			return fmt.Errorf("there is an empty key in the header")
		}
		if k[0] == ':' {
			continue
		}
		for i := 0; i < len(k); i++ {
			r := k[i]
			if !(r >= 'a' && r <= 'z') && !(r >= '0' && r <= '9') && r != '.' && r != '-' && r != '_' {
				return fmt.Errorf("header key %q contains illegal characters not in [0-9a-z-_.]", k)
			}
		}
		if strings.HasSuffix(k, "-bin") {
			continue
		}
		for _, v := range vv {
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] > 0x7E {
					return fmt.Errorf("header key %q contains value with non-printable ASCII characters", k)
				}
			}
		}
	}
	return nil
}

// decodeTimeout parses grpc-timeout: at most 8 digits and a unit.
func decodeTimeout(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("transport: timeout string is too short: %q", s)
	}
	if len(s) > 9 {
		return 0, fmt.Errorf("transport: timeout string is too long: %q", s)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("transport: timeout unit is not recognized: %q", s)
	}
	t, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil {
		return 0, err
	}
	if unit == time.Hour && t > math.MaxInt64/uint64(time.Hour) {
		return time.Duration(math.MaxInt64), nil
	}
	return unit * time.Duration(t), nil
}

// encodeGrpcMessage percent-encodes a status message as the gRPC spec
// says: bytes outside printable ASCII, and '%', as %XX (of their UTF-8).
func encodeGrpcMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	var sb strings.Builder
	for len(msg) > 0 {
		r, size := utf8.DecodeRuneInString(msg)
		for _, b := range []byte(string(r)) {
			if size == 1 && b >= ' ' && b <= '~' && b != '%' {
				sb.WriteByte(b)
			} else {
				fmt.Fprintf(&sb, "%%%02X", b)
			}
		}
		msg = msg[size:]
	}
	return sb.String()
}
