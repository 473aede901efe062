package cloudflare

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits on what Cloudflare sends.
const (
	// MaxDevices is the most devices one request may ask about: Cloudflare
	// sends at most 1,000 per call.
	MaxDevices = 1000
	// MaxBodyBytes bounds a request body: 1,000 devices of six bounded
	// fields fit with room to spare.
	MaxBodyBytes = 1 << 20
	// MaxFieldLen bounds each field of a device, in bytes.
	MaxFieldLen = 256
)

// ErrTooManyDevices: the request asks about more than MaxDevices devices.
var ErrTooManyDevices = errors.New("more than 1000 devices")

// Device is one device Cloudflare asks about. Every field but ID may be empty.
type Device struct {
	ID          string // Cloudflare's device_id
	Email       string
	Serial      string
	MAC         string
	VirtualIPv4 string
	Hostname    string
}

// fields are the device fields Cloudflare sends, by the key it spells
// them with in its samples; fieldOf also takes each key without its '_'
// (deviceId, DeviceID), and any case of A-Z.
var fields = [...]string{"device_id", "email", "serial_number", "mac_address", "virtual_ipv4", "hostname"}

// fieldOf is the index in fields of a device's key, -1 for a key of none.
// Case is folded for A-Z only: a key with any other byte is no field's
// (encoding/json would take "ſerial_number", with a long s, for
// serial_number).
func fieldOf(key string) int {
	const longest = len("serial_number")
	if len(key) > longest {
		return -1
	}
	var b [longest]byte
	k := b[:0]
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c >= utf8.RuneSelf:
			return -1
		}
		k = append(k, c)
	}
	for i, f := range fields {
		if string(k) == f || string(k) == strings.ReplaceAll(f, "_", "") {
			return i
		}
	}
	return -1
}

// DecodeRequest reads Cloudflare's posture request,
// {"devices":[{"device_id":…, "serial_number":…, …}, …]}: keys matched in
// any case of A-Z, snake_case or not; unknown keys ignored; every known
// value a string or null (null is the field left out); a field given twice
// with different values, or "devices" twice, is an error; device_id present,
// non-empty and given for one device only; at most MaxDevices devices
// (ErrTooManyDevices). device_id and email, which are recorded in the
// decision log, are at most MaxFieldLen bytes of valid UTF-8 without control
// characters; another field that is not is left empty (it could only match
// nothing). The caller bounds the body's size.
func DecodeRequest(r io.Reader) ([]Device, error) {
	dec := json.NewDecoder(r)
	out, err := decodeBody(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("request body has data after its JSON object")
	}
	return out, nil
}

func decodeBody(dec *json.Decoder) ([]Device, error) {
	if err := delim(dec, '{'); err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	var out []Device
	seen := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("request body: %w", err)
		}
		if k, _ := key.(string); !strings.EqualFold(k, "devices") || strings.ContainsFunc(k, nonASCII) {
			if err := skip(dec); err != nil {
				return nil, fmt.Errorf("request body: %w", err)
			}
			continue
		}
		if seen {
			return nil, errors.New(`"devices" is given twice`)
		}
		seen = true
		if out, err = decodeDevices(dec); err != nil {
			return nil, err
		}
	}
	if err := delim(dec, '}'); err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	if out == nil {
		return nil, errors.New(`no "devices" list`)
	}
	return out, nil
}

func nonASCII(r rune) bool { return r >= utf8.RuneSelf }

// decodeDevices reads the "devices" list.
func decodeDevices(dec *json.Decoder) ([]Device, error) {
	if err := delim(dec, '['); err != nil {
		return nil, fmt.Errorf(`"devices": %w`, err)
	}
	out := []Device{}
	ids := map[string]int{}
	for dec.More() {
		if len(out) == MaxDevices {
			return nil, fmt.Errorf("%w: more were sent", ErrTooManyDevices)
		}
		n := len(out) + 1
		d, err := decodeDevice(dec)
		if err != nil {
			return nil, fmt.Errorf("device %d: %w", n, err)
		}
		if first, ok := ids[d.ID]; ok {
			return nil, fmt.Errorf("device %d: device_id is device %d's too", n, first)
		}
		ids[d.ID] = n
		out = append(out, d)
	}
	if err := delim(dec, ']'); err != nil {
		return nil, fmt.Errorf(`"devices": %w`, err)
	}
	return out, nil
}

// decodeDevice reads one device's object.
func decodeDevice(dec *json.Decoder) (Device, error) {
	tok, err := dec.Token()
	if err != nil {
		return Device{}, err
	}
	if tok != json.Delim('{') {
		return Device{}, errors.New("not a JSON object")
	}
	var vals [len(fields)]*string
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return Device{}, err
		}
		i := fieldOf(key.(string))
		if i < 0 {
			if err := skip(dec); err != nil {
				return Device{}, err
			}
			continue
		}
		tok, err := dec.Token()
		if err != nil {
			return Device{}, err
		}
		var v string
		switch t := tok.(type) {
		case nil:
			continue
		case string:
			v = t
		default:
			return Device{}, fmt.Errorf("%s is not a string", fields[i])
		}
		if prev := vals[i]; prev != nil && *prev != v {
			return Device{}, fmt.Errorf("%s is given twice, with different values", fields[i])
		}
		vals[i] = &v
	}
	if err := delim(dec, '}'); err != nil {
		return Device{}, err
	}
	var d Device
	for i, dst := range []*string{&d.ID, &d.Email, &d.Serial, &d.MAC, &d.VirtualIPv4, &d.Hostname} {
		if vals[i] == nil {
			continue
		}
		v := *vals[i]
		var bad error
		switch {
		case len(v) > MaxFieldLen:
			bad = fmt.Errorf("%s is %d bytes, more than %d", fields[i], len(v), MaxFieldLen)
		case !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError):
			bad = fmt.Errorf("%s is not valid UTF-8", fields[i])
		case strings.ContainsFunc(v, control):
			bad = fmt.Errorf("%s has a control character", fields[i])
		}
		if bad == nil {
			*dst = v
			continue
		}
		// device_id and email are recorded: the request is wrong. The
		// others only ever match, and a Mac's user chooses its hostname
		// (and can make WARP report other values): such a value matches
		// nothing, as if not sent, and refuses no other Mac's answer.
		if dst == &d.ID || dst == &d.Email {
			return Device{}, bad
		}
	}
	if strings.TrimSpace(d.ID) == "" {
		return Device{}, errors.New("no device_id")
	}
	return d, nil
}

// control reports the C0 controls and DEL: no device_id or e-mail address
// has one, and PostgreSQL stores no NUL.
func control(r rune) bool { return r < 0x20 || r == 0x7f }

// delim reads the next token, which must be want.
func delim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("expected %q, got %v", want, tok)
	}
	return nil
}

// skip reads past the next value, whatever it is; encoding/json bounds
// its nesting.
func skip(dec *json.Decoder) error {
	var v json.RawMessage
	return dec.Decode(&v)
}
