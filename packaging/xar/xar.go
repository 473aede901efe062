// Package xar writes xar archives, the container of a macOS flat package.
//
// An archive is a 28-byte header, a zlib-compressed XML table of contents
// (TOC) and a heap. The heap starts with the SHA-1 of the compressed TOC,
// followed by each file's data; the TOC records every file's offset, length
// and SHA-1 checksums of the archived and extracted bytes.
//
// An archive may be signed (Writer.Sign): the TOC then names an RSA
// signature, stored in the heap right after the TOC checksum, over that
// checksum, and carries the signer's certificate chain. Installer checks
// that signature against the chain.
//
// Output depends only on the files added and their order, so the same
// inputs give the same bytes (RSA PKCS #1 v1.5 signatures are deterministic).
package xar

import (
	"bytes"
	"compress/zlib"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

const (
	magic      = 0x78617221 // "xar!"
	headerSize = 28
	version    = 1
	// checksumSHA1 is the header's code for SHA-1 TOC checksums.
	checksumSHA1 = 1
)

// Encoding is how a file's data is stored in the heap.
type Encoding int

const (
	// Zlib compresses the data with zlib. xar names this encoding
	// "application/x-gzip" although the stream is zlib, not gzip.
	Zlib Encoding = iota
	// Stored keeps the data as is; right for data that is already
	// compressed, such as a package Payload.
	Stored
)

func (e Encoding) style() string {
	if e == Stored {
		return "application/octet-stream"
	}
	return "application/x-gzip"
}

// File is one entry of the archive.
type File struct {
	Name     string      // slash-separated path; parent directories must be added first
	Mode     fs.FileMode // permission bits, plus fs.ModeDir for directories
	UID, GID int
	User     string // e.g. "root"; omitted when empty
	Group    string // e.g. "wheel"; omitted when empty
	ModTime  time.Time
	Data     []byte // ignored for directories
	Encoding Encoding
}

// Writer collects files and writes the archive in one go, since the TOC,
// which precedes the heap, must know every file's place in the heap.
type Writer struct {
	created time.Time
	signer  *Signer
	root    []*node
	byPath  map[string]*node
	n       int
}

type node struct {
	id       int
	f        File
	children []*node
}

// NewWriter returns a Writer whose TOC records created as its creation time.
func NewWriter(created time.Time) *Writer {
	return &Writer{created: created, byPath: map[string]*node{}}
}

// Signer signs an archive.
type Signer struct {
	// Key is the private key of Chain[0]; it must be an RSA key.
	Key crypto.Signer
	// Chain is the signing certificate followed by its issuers (for a
	// Developer ID Installer certificate: the Developer ID CA, then
	// Apple's root), each certifying the one before it.
	Chain []*x509.Certificate
}

// Sign makes WriteTo sign the archive with s.
func (w *Writer) Sign(s *Signer) error {
	if s == nil || s.Key == nil || len(s.Chain) == 0 {
		return errors.New("xar: signing needs a key and at least one certificate")
	}
	pub, ok := s.Key.Public().(*rsa.PublicKey)
	if !ok {
		return errors.New("xar: only RSA signing keys are supported")
	}
	if !pub.Equal(s.Chain[0].PublicKey) {
		return errors.New("xar: the key does not belong to the first certificate of the chain")
	}
	w.signer = s
	return nil
}

// appleEpoch is the origin of signature-creation-time: seconds since
// 2001-01-01 UTC, as Apple's frameworks count time.
var appleEpoch = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

// Add appends a file or directory. Entries keep the order they are added in.
func (w *Writer) Add(f File) error {
	name := strings.Trim(f.Name, "/")
	if name == "" || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." {
		return fmt.Errorf("xar: invalid name %q", f.Name)
	}
	if _, dup := w.byPath[name]; dup {
		return fmt.Errorf("xar: duplicate entry %q", name)
	}
	if t := f.Mode.Type(); t != 0 && t != fs.ModeDir {
		return fmt.Errorf("xar: %s: unsupported file type %v", name, t)
	}
	w.n++
	n := &node{id: w.n, f: f}
	n.f.Name = path.Base(name)
	if dir := path.Dir(name); dir == "." {
		w.root = append(w.root, n)
	} else {
		parent, ok := w.byPath[dir]
		if !ok || !parent.f.Mode.IsDir() {
			return fmt.Errorf("xar: %s: parent directory %q not added", name, dir)
		}
		parent.children = append(parent.children, n)
	}
	w.byPath[name] = n
	return nil
}

// WriteTo writes the archive to out.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	// 1. Lay out the heap: the TOC checksum first, then file data in
	//    TOC order.
	//    A signature, when signing, follows the checksum.
	var heap bytes.Buffer
	heap.Write(make([]byte, sha1.Size))
	var toc bytes.Buffer
	toc.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<xar>\n <toc>\n")
	fmt.Fprintf(&toc, "  <checksum style=\"sha1\">\n   <offset>0</offset>\n   <size>%d</size>\n  </checksum>\n", sha1.Size)
	sigSize := 0
	if w.signer != nil {
		sigSize = w.signer.Key.Public().(*rsa.PublicKey).Size()
		heap.Write(make([]byte, sigSize))
		fmt.Fprintf(&toc, "  <signature-creation-time>%d</signature-creation-time>\n", int64(w.created.Sub(appleEpoch).Seconds()))
		fmt.Fprintf(&toc, "  <signature style=\"RSA\">\n   <offset>%d</offset>\n   <size>%d</size>\n", sha1.Size, sigSize)
		toc.WriteString("   <KeyInfo xmlns=\"http://www.w3.org/2000/09/xmldsig#\">\n    <X509Data>\n")
		for _, c := range w.signer.Chain {
			fmt.Fprintf(&toc, "     <X509Certificate>%s</X509Certificate>\n", base64.StdEncoding.EncodeToString(c.Raw))
		}
		toc.WriteString("    </X509Data>\n   </KeyInfo>\n  </signature>\n")
	}
	fmt.Fprintf(&toc, "  <creation-time>%s</creation-time>\n", xarTime(w.created))
	for _, n := range w.root {
		if err := writeNode(&toc, &heap, n, "  "); err != nil {
			return 0, err
		}
	}
	toc.WriteString(" </toc>\n</xar>\n")

	// 2. Compress the TOC; its SHA-1 goes at heap offset 0.
	var ztoc bytes.Buffer
	zw, err := zlib.NewWriterLevel(&ztoc, zlib.BestCompression)
	if err != nil {
		return 0, err
	}
	zw.Write(toc.Bytes())
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("xar: compressing toc: %w", err)
	}
	sum := sha1.Sum(ztoc.Bytes())
	heapBytes := heap.Bytes()
	copy(heapBytes, sum[:])
	if w.signer != nil {
		// PKCS #1 v1.5 over the SHA-1 TOC checksum, as xar verifies it.
		sig, err := w.signer.Key.Sign(rand.Reader, sum[:], crypto.SHA1)
		if err != nil {
			return 0, fmt.Errorf("xar: signing: %w", err)
		}
		if len(sig) != sigSize {
			return 0, fmt.Errorf("xar: signature is %d bytes, expected %d", len(sig), sigSize)
		}
		copy(heapBytes[sha1.Size:], sig)
	}

	// 3. Header, compressed TOC, heap.
	hdr := make([]byte, headerSize)
	binary.BigEndian.PutUint32(hdr[0:], magic)
	binary.BigEndian.PutUint16(hdr[4:], headerSize)
	binary.BigEndian.PutUint16(hdr[6:], version)
	binary.BigEndian.PutUint64(hdr[8:], uint64(ztoc.Len()))
	binary.BigEndian.PutUint64(hdr[16:], uint64(toc.Len()))
	binary.BigEndian.PutUint32(hdr[24:], checksumSHA1)

	var total int64
	for _, b := range [][]byte{hdr, ztoc.Bytes(), heapBytes} {
		n, err := out.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Bytes returns the archive as a byte slice.
func (w *Writer) Bytes() ([]byte, error) {
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeNode(toc, heap *bytes.Buffer, n *node, indent string) error {
	f := n.f
	fmt.Fprintf(toc, "%s<file id=\"%d\">\n", indent, n.id)
	in := indent + " "
	if !f.Mode.IsDir() {
		archived := f.Data
		if f.Encoding == Zlib {
			var z bytes.Buffer
			zw, err := zlib.NewWriterLevel(&z, zlib.BestCompression)
			if err != nil {
				return err
			}
			zw.Write(f.Data)
			if err := zw.Close(); err != nil {
				return fmt.Errorf("xar: compressing %s: %w", f.Name, err)
			}
			archived = z.Bytes()
		}
		offset := heap.Len()
		heap.Write(archived)
		as, es := sha1.Sum(archived), sha1.Sum(f.Data)
		fmt.Fprintf(toc, "%s<data>\n", in)
		fmt.Fprintf(toc, "%s <length>%d</length>\n", in, len(archived))
		fmt.Fprintf(toc, "%s <encoding style=\"%s\"/>\n", in, f.Encoding.style())
		fmt.Fprintf(toc, "%s <offset>%d</offset>\n", in, offset)
		fmt.Fprintf(toc, "%s <size>%d</size>\n", in, len(f.Data))
		fmt.Fprintf(toc, "%s <extracted-checksum style=\"sha1\">%s</extracted-checksum>\n", in, hex.EncodeToString(es[:]))
		fmt.Fprintf(toc, "%s <archived-checksum style=\"sha1\">%s</archived-checksum>\n", in, hex.EncodeToString(as[:]))
		fmt.Fprintf(toc, "%s</data>\n", in)
	}
	t := xarTime(f.ModTime)
	fmt.Fprintf(toc, "%s<ctime>%s</ctime>\n%s<mtime>%s</mtime>\n%s<atime>%s</atime>\n", in, t, in, t, in, t)
	if f.Group != "" {
		fmt.Fprintf(toc, "%s<group>%s</group>\n", in, escape(f.Group))
	}
	fmt.Fprintf(toc, "%s<gid>%d</gid>\n", in, f.GID)
	if f.User != "" {
		fmt.Fprintf(toc, "%s<user>%s</user>\n", in, escape(f.User))
	}
	fmt.Fprintf(toc, "%s<uid>%d</uid>\n", in, f.UID)
	// xar writes modes as four octal digits.
	fmt.Fprintf(toc, "%s<mode>%04o</mode>\n", in, uint32(f.Mode.Perm()))
	typ := "file"
	if f.Mode.IsDir() {
		typ = "directory"
	}
	fmt.Fprintf(toc, "%s<type>%s</type>\n", in, typ)
	fmt.Fprintf(toc, "%s<name>%s</name>\n", in, escape(f.Name))
	for _, c := range n.children {
		if err := writeNode(toc, heap, c, in); err != nil {
			return err
		}
	}
	fmt.Fprintf(toc, "%s</file>\n", indent)
	return nil
}

// xarTime formats t as xar does: UTC, seconds, "Z".
func xarTime(t time.Time) string {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

var _ io.WriterTo = (*Writer)(nil)
