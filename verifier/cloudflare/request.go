package cloudflare

import (
	"bytes"
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

// fieldKey is a key as matched: lower case, without '_' and '-' (Cloudflare's
// samples spell the same key device_id and deviceId).
func fieldKey(k string) string {
	k = strings.ToLower(k)
	if strings.ContainsAny(k, "_-") {
		k = strings.NewReplacer("_", "", "-", "").Replace(k)
	}
	return k
}

// field names a Device field by its matched key.
func (d *Device) field(key string) *string {
	switch key {
	case "deviceid":
		return &d.ID
	case "email":
		return &d.Email
	case "serialnumber":
		return &d.Serial
	case "macaddress":
		return &d.MAC
	case "virtualipv4":
		return &d.VirtualIPv4
	case "hostname":
		return &d.Hostname
	}
	return nil
}

// DecodeRequest reads Cloudflare's posture request,
// {"devices":[{"device_id":…, "serial_number":…, …}, …]}: keys matched
// without regard to case or '_'; unknown keys ignored; every known value a
// string or null; device_id present and non-empty; at most MaxDevices
// devices (ErrTooManyDevices), each field at most MaxFieldLen bytes. The
// caller bounds the body's size.
func DecodeRequest(r io.Reader) ([]Device, error) {
	dec := json.NewDecoder(r)
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	if top == nil {
		return nil, errors.New("request body is not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("request body has data after its JSON object")
	}
	var list json.RawMessage
	for k, v := range top {
		if fieldKey(k) != "devices" {
			continue
		}
		if list != nil {
			return nil, errors.New(`"devices" is given twice`)
		}
		list = v
	}
	if list == nil {
		return nil, errors.New(`no "devices" list`)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(list, &raw); err != nil || (raw == nil && !bytes.Equal(bytes.TrimSpace(list), []byte("[]"))) {
		return nil, errors.New(`"devices" is not a list`)
	}
	if len(raw) > MaxDevices {
		return nil, fmt.Errorf("%w: %d", ErrTooManyDevices, len(raw))
	}
	out := make([]Device, 0, len(raw))
	for i, r := range raw {
		d, err := decodeDevice(r)
		if err != nil {
			return nil, fmt.Errorf("device %d: %w", i+1, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func decodeDevice(r json.RawMessage) (Device, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(r, &fields); err != nil || fields == nil {
		return Device{}, errors.New("not a JSON object")
	}
	var d Device
	seen := make(map[string]bool, len(fields))
	for k, v := range fields {
		key := fieldKey(k)
		dst := d.field(key)
		if dst == nil {
			continue
		}
		if seen[key] {
			return Device{}, fmt.Errorf("%q is given twice", key)
		}
		seen[key] = true
		var s *string
		if err := json.Unmarshal(v, &s); err != nil {
			return Device{}, fmt.Errorf("%s is not a string", key)
		}
		if s == nil {
			continue
		}
		if len(*s) > MaxFieldLen {
			return Device{}, fmt.Errorf("%s is %d bytes, more than %d", key, len(*s), MaxFieldLen)
		}
		if !utf8.ValidString(*s) || strings.ContainsRune(*s, utf8.RuneError) {
			return Device{}, fmt.Errorf("%s is not valid UTF-8", key)
		}
		*dst = *s
	}
	if strings.TrimSpace(d.ID) == "" {
		return Device{}, errors.New("no device_id")
	}
	return d, nil
}
