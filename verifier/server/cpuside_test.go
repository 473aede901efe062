package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/pprof"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The sign-in benchmarks run the identity provider and its browsers in one
// process, so getrusage counts both. Each side's goroutines carry a pprof
// label instead (a goroutine inherits its creator's labels, so every
// goroutine a server starts, its connections' and its store's included,
// carries the server's), and a CPU profile taken while the sign-ins run
// splits the process's CPU by it. What carries neither label is the
// runtime's own (the background garbage collector, mostly), made by both.
const (
	sideLabel   = "side"
	sideIdP     = "idp"
	sideBrowser = "browser"
	// sideIdPSigning is the identity provider's CPU in RSA signatures: the
	// floor every IdP pays, measured in the same samples as the rest.
	sideIdPSigning = "idp-signing"
	rsaSign        = "crypto/rsa.SignPKCS1v15"
)

// onSide runs fn with its goroutine, and every goroutine it starts,
// labelled side.
func onSide(side string, fn func()) {
	pprof.Do(context.Background(), pprof.Labels(sideLabel, side), func(context.Context) { fn() })
}

// sideProfile is a CPU profile being taken to split the CPU by side.
type sideProfile struct{ buf bytes.Buffer }

// startSideProfile starts the process's CPU profile, or returns nil when
// one is already being taken (go test -cpuprofile): the split is then not
// reported.
func startSideProfile() *sideProfile {
	p := &sideProfile{}
	if err := pprof.StartCPUProfile(&p.buf); err != nil {
		return nil
	}
	return p
}

// stop ends the profile and returns the CPU sampled on each side; the key
// "" is what carried no side, and the identity provider's RSA signatures
// are counted apart from the rest of its CPU (sideIdPSigning).
func (p *sideProfile) stop() (map[string]time.Duration, error) {
	pprof.StopCPUProfile()
	zr, err := gzip.NewReader(&p.buf)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	return cpuBySide(raw)
}

// cpuBySide sums a CPU profile's (profile.proto) nanoseconds by the side
// label of each sample. Only the fields it needs are read: the sample
// types (to find the nanoseconds), the samples' values and labels, and the
// string table their indexes point into.
func cpuBySide(raw []byte) (map[string]time.Duration, error) {
	type label struct{ key, str int64 }
	type sample struct {
		locations []int64
		values    []int64
		labels    []label
	}
	var (
		types     []int64 // each sample type's unit, as a string index
		samples   []sample
		strs      []string
		locations = map[int64][]int64{} // a location's functions
		functions = map[int64]int64{}   // a function's name
	)
	// fields walks one message's fields, calling fn with each field's
	// number, wire type and value (varint, or bytes).
	fields := func(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error) error {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			var (
				v  uint64
				bs []byte
			)
			switch typ {
			case protowire.VarintType:
				v, n = protowire.ConsumeVarint(b)
			case protowire.BytesType:
				bs, n = protowire.ConsumeBytes(b)
			default:
				n = protowire.ConsumeFieldValue(num, typ, b)
			}
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			if err := fn(num, typ, v, bs); err != nil {
				return err
			}
		}
		return nil
	}
	// ints reads a repeated integer field, packed or not.
	ints := func(typ protowire.Type, v uint64, bs []byte, out *[]int64) error {
		if typ == protowire.VarintType {
			*out = append(*out, int64(v))
			return nil
		}
		for len(bs) > 0 {
			x, n := protowire.ConsumeVarint(bs)
			if n < 0 {
				return protowire.ParseError(n)
			}
			*out = append(*out, int64(x))
			bs = bs[n:]
		}
		return nil
	}
	err := fields(raw, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
		switch num {
		case 1: // sample_type: ValueType{type = 1, unit = 2}
			var unit int64
			err := fields(bs, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				if num == 2 {
					unit = int64(v)
				}
				return nil
			})
			types = append(types, unit)
			return err
		case 2: // sample: Sample{location_id = 1, value = 2, label = 3}
			var s sample
			err := fields(bs, func(num protowire.Number, typ protowire.Type, v uint64, bs []byte) error {
				switch num {
				case 1:
					return ints(typ, v, bs, &s.locations)
				case 2:
					return ints(typ, v, bs, &s.values)
				case 3: // Label{key = 1, str = 2}
					var l label
					err := fields(bs, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
						switch num {
						case 1:
							l.key = int64(v)
						case 2:
							l.str = int64(v)
						}
						return nil
					})
					s.labels = append(s.labels, l)
					return err
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 4: // location: Location{id = 1, line = 4: Line{function_id = 1}}
			var id int64
			var fns []int64
			err := fields(bs, func(num protowire.Number, _ protowire.Type, v uint64, bs []byte) error {
				switch num {
				case 1:
					id = int64(v)
				case 4:
					return fields(bs, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
						if num == 1 {
							fns = append(fns, int64(v))
						}
						return nil
					})
				}
				return nil
			})
			locations[id] = fns
			return err
		case 5: // function: Function{id = 1, name = 2}
			var id, name int64
			err := fields(bs, func(num protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch num {
				case 1:
					id = int64(v)
				case 2:
					name = int64(v)
				}
				return nil
			})
			functions[id] = name
			return err
		case 6: // string_table
			strs = append(strs, string(bs))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the CPU profile: %w", err)
	}
	str := func(i int64) string {
		if i < 0 || i >= int64(len(strs)) {
			return ""
		}
		return strs[i]
	}
	ns := -1
	for i, unit := range types {
		if str(unit) == "nanoseconds" {
			ns = i
		}
	}
	if ns < 0 {
		return nil, errors.New("reading the CPU profile: no sample type in nanoseconds")
	}
	// signing says whether a stack is in an RSA signature.
	signing := func(locs []int64) bool {
		for _, l := range locs {
			for _, f := range locations[l] {
				if str(functions[f]) == rsaSign {
					return true
				}
			}
		}
		return false
	}
	out := map[string]time.Duration{}
	for _, s := range samples {
		if ns >= len(s.values) {
			continue
		}
		side := ""
		for _, l := range s.labels {
			if str(l.key) == sideLabel {
				side = str(l.str)
			}
		}
		if side == sideIdP && signing(s.locations) {
			side = sideIdPSigning
		}
		out[side] += time.Duration(s.values[ns])
	}
	return out, nil
}

// asBrowser labels the calling goroutine, and those it starts from now on,
// as the browsers'.
func asBrowser() {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(sideLabel, sideBrowser)))
}
