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

// wireDevice is a device as Cloudflare's samples spell it. encoding/json
// matches keys without regard to case, so each field has its snake_case
// key and its key without '_' (deviceId, DeviceID); unknown keys are
// ignored, a value that is not a string or null is an error.
type wireDevice struct {
	ID          *string `json:"device_id"`
	ID2         *string `json:"deviceid"`
	Email       *string `json:"email"`
	Serial      *string `json:"serial_number"`
	Serial2     *string `json:"serialnumber"`
	MAC         *string `json:"mac_address"`
	MAC2        *string `json:"macaddress"`
	VirtualIPv4 *string `json:"virtual_ipv4"`
	VirtualIP2  *string `json:"virtualipv4"`
	Hostname    *string `json:"hostname"`
}

type wireRequest struct {
	Devices *[]*wireDevice `json:"devices"`
}

// DecodeRequest reads Cloudflare's posture request,
// {"devices":[{"device_id":…, "serial_number":…, …}, …]}: keys matched
// without regard to case, snake_case or not; unknown keys ignored; every
// known value a string or null; device_id present and non-empty; at most
// MaxDevices devices (ErrTooManyDevices), each field at most MaxFieldLen
// bytes of valid UTF-8. The caller bounds the body's size.
func DecodeRequest(r io.Reader) ([]Device, error) {
	dec := json.NewDecoder(r)
	var req wireRequest
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("request body has data after its JSON object")
	}
	if req.Devices == nil {
		return nil, errors.New(`no "devices" list`)
	}
	list := *req.Devices
	if len(list) > MaxDevices {
		return nil, fmt.Errorf("%w: %d", ErrTooManyDevices, len(list))
	}
	out := make([]Device, len(list))
	for i, w := range list {
		if w == nil {
			return nil, fmt.Errorf("device %d: not a JSON object", i+1)
		}
		d := &out[i]
		for _, f := range []struct {
			name string
			dst  *string
			a, b *string
		}{
			{"device_id", &d.ID, w.ID, w.ID2}, {"email", &d.Email, w.Email, nil},
			{"serial_number", &d.Serial, w.Serial, w.Serial2}, {"mac_address", &d.MAC, w.MAC, w.MAC2},
			{"virtual_ipv4", &d.VirtualIPv4, w.VirtualIPv4, w.VirtualIP2}, {"hostname", &d.Hostname, w.Hostname, nil},
		} {
			v, err := pick(f.a, f.b)
			if err == nil && len(v) > MaxFieldLen {
				err = fmt.Errorf("is %d bytes, more than %d", len(v), MaxFieldLen)
			}
			if err == nil && (!utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError)) {
				err = errors.New("is not valid UTF-8")
			}
			if err != nil {
				return nil, fmt.Errorf("device %d: %s %w", i+1, f.name, err)
			}
			*f.dst = v
		}
		if strings.TrimSpace(d.ID) == "" {
			return nil, fmt.Errorf("device %d: no device_id", i+1)
		}
	}
	return out, nil
}

// pick is the value of a field given under either spelling; two different
// values are an error.
func pick(a, b *string) (string, error) {
	switch {
	case a != nil && b != nil && *a != *b:
		return "", errors.New("is given twice, with different values")
	case a != nil:
		return *a, nil
	case b != nil:
		return *b, nil
	}
	return "", nil
}
