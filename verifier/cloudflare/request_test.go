package cloudflare_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clearance/clearance/verifier/cloudflare"
)

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	got, err := cloudflare.DecodeRequest(strings.NewReader(`{"devices":[
		{"device_id":"d1","email":"ana@example.com","serial_number":"K7Q2XW94LM","mac_address":"aa:bb:cc:dd:ee:ff","virtual_ipv4":"100.96.0.10","hostname":"Anas-MacBook-Pro"},
		{"deviceId":"d2","serialNumber":"C02X1","Hostname":null,"unknown":{"nested":[1,2]}},
		{"DEVICE_ID":"d3","Serial-Number":""}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []cloudflare.Device{
		{ID: "d1", Email: "ana@example.com", Serial: "K7Q2XW94LM", MAC: "aa:bb:cc:dd:ee:ff", VirtualIPv4: "100.96.0.10", Hostname: "Anas-MacBook-Pro"},
		{ID: "d2", Serial: "C02X1"},
		{ID: "d3"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("DecodeRequest = %+v\nwant %+v", got, want)
	}
	if got, err := cloudflare.DecodeRequest(strings.NewReader(`{"Devices":[]}`)); err != nil || len(got) != 0 {
		t.Fatalf("empty list: %v, %v", got, err)
	}
}

func TestDecodeRequestRefuses(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", cloudflare.MaxFieldLen+1)
	for name, body := range map[string]string{
		"empty":               ``,
		"not JSON":            `devices`,
		"array":               `[{"device_id":"a"}]`,
		"null":                `null`,
		"no devices":          `{"device":[]}`,
		"devices null":        `{"devices":null}`,
		"devices object":      `{"devices":{"device_id":"a"}}`,
		"device not object":   `{"devices":["a"]}`,
		"device null":         `{"devices":[null]}`,
		"no device_id":        `{"devices":[{"serial_number":"x"}]}`,
		"empty device_id":     `{"devices":[{"device_id":" "}]}`,
		"device_id number":    `{"devices":[{"device_id":7}]}`,
		"serial object":       `{"devices":[{"device_id":"a","serial_number":{}}]}`,
		"key twice":           `{"devices":[{"device_id":"a","deviceId":"b"}]}`,
		"device_id too long":  `{"devices":[{"device_id":"` + long + `"}]}`,
		"email too long":      `{"devices":[{"device_id":"a","email":"` + long + `"}]}`,
		"invalid UTF-8":       "{\"devices\":[{\"device_id\":\"a\xff\"}]}",
		"email not UTF-8":     `{"devices":[{"device_id":"a","email":"\ud800@example.com"}]}`,
		"trailing data":       `{"devices":[]} {"devices":[]}`,
		"truncated":           `{"devices":[{"device_id":"a"}`,
		"deeply nested value": `{"devices":[{"device_id":"a","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}]}`,
		"devices twice":       `{"devices":[],"DEVICES":[{"device_id":"a"}]}`,
		"a key in two cases":  `{"devices":[{"device_id":"a","serial_number":"X","SERIAL_NUMBER":"Y"}]}`,
		"a device_id twice":   `{"devices":[{"device_id":"a"},{"deviceId":"a"}]}`,
		"NUL in device_id":    `{"devices":[{"device_id":"a\u0000"}]}`,
		"escape in email":     `{"devices":[{"device_id":"a","email":"a\u001b[2J@example.com"}]}`,
		"DEL in device_id":    `{"devices":[{"device_id":"a\u007f"}]}`,
		"hostname a number":   `{"devices":[{"device_id":"a","hostname":7}]}`,
		"hostname a list":     `{"devices":[{"device_id":"a","hostname":["x"]}]}`,
	} {
		if got, err := cloudflare.DecodeRequest(strings.NewReader(body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, got)
		}
	}
}

// TestDecodeRequestKeys: keys fold A-Z only, so a look-alike key is no
// field's (encoding/json would fold a long s to an s); the same value under
// both spellings is one field; a control character in a field that only
// ever matches is kept, to match nothing.
func TestDecodeRequestKeys(t *testing.T) {
	t.Parallel()
	got, err := cloudflare.DecodeRequest(strings.NewReader(`{"devices":[
		{"device_id":"a","\u017ferial_number":"X1","serial_number":"X2","serialNumber":"X2"},
		{"device_\u0131d":"b","device_id":"c","hostname":"mac\u0000","Serial_NUMBER":"S\u0000"}],
		"dev\u0131ces":[{"device_id":"d"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []cloudflare.Device{{ID: "a", Serial: "X2"}, {ID: "c"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("DecodeRequest = %q\nwant %q", got, want)
	}
}

// TestDecodeRequestOneMacsOddFields: a hostname, serial number, MAC
// address or virtual IP that is too long, not UTF-8 or holds a control
// character is left empty (it could only match nothing), and refuses no
// request: a Mac's user chooses its hostname, and one Mac must not cost the
// other Macs of a batch their answers.
func TestDecodeRequestOneMacsOddFields(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", cloudflare.MaxFieldLen+1)
	for name, field := range map[string]string{
		"hostname too long":           `"hostname":"` + long + `"`,
		"hostname with U+FFFD":        `"hostname":"mac\ufffd"`,
		"hostname a lone surrogate":   `"hostname":"mac\ud800"`,
		"hostname not UTF-8":          "\"hostname\":\"mac\xff\"",
		"hostname with NUL":           `"hostname":"mac\u0000"`,
		"serial too long":             `"serial_number":"` + long + `"`,
		"serial with an escape":       `"serial_number":"C02\u001b"`,
		"mac_address not UTF-8":       "\"mac_address\":\"\xfe\"",
		"virtual_ipv4 with a newline": `"virtual_ipv4":"100.96.0.1\n"`,
	} {
		got, err := cloudflare.DecodeRequest(strings.NewReader(`{"devices":[{"device_id":"a",` + field + `},{"device_id":"b","hostname":"ok"}]}`))
		want := []cloudflare.Device{{ID: "a"}, {ID: "b", Hostname: "ok"}}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestDecodeRequestTooMany(t *testing.T) {
	t.Parallel()
	body := func(n int) string {
		ds := make([]map[string]string, n)
		for i := range ds {
			ds[i] = map[string]string{"device_id": fmt.Sprint(i)}
		}
		b, _ := json.Marshal(map[string]any{"devices": ds})
		return string(b)
	}
	if got, err := cloudflare.DecodeRequest(strings.NewReader(body(cloudflare.MaxDevices))); err != nil || len(got) != cloudflare.MaxDevices {
		t.Fatalf("1000 devices: %d, %v", len(got), err)
	}
	if _, err := cloudflare.DecodeRequest(strings.NewReader(body(cloudflare.MaxDevices + 1))); !errors.Is(err, cloudflare.ErrTooManyDevices) {
		t.Fatalf("1001 devices: %v, want ErrTooManyDevices", err)
	}
}

// FuzzDecodeRequest: whatever the body, the decoder returns devices that
// keep its promises, or an error; it never panics.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"devices":[{"device_id":"d1","email":"a@b.c","serial_number":"K7Q2XW94LM","mac_address":"","virtual_ipv4":"100.96.0.1","hostname":"mac"}]}`,
		`{"Devices":[{"deviceId":"x","serialNumber":null}]}`,
		`{"devices":[]}`, `{"devices":[{}]}`, `{}`, `[]`, `{"devices":[{"device_id":"a","DeviceId":"b"}]}`,
		"{\"devices\":[{\"device_id\":\"\xff\"}]}",
		`{"devices":[{"device_id":"a","serial_number":"X","SERIAL_NUMBER":"Y"}],"Devices":[]}`,
		`{"devices":[{"device_id":"a\u0000","hostname":"b\u0000"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ds, err := cloudflare.DecodeRequest(strings.NewReader(string(body)))
		if err != nil {
			return
		}
		if len(ds) > cloudflare.MaxDevices {
			t.Fatalf("%d devices", len(ds))
		}
		ids := map[string]bool{}
		for _, d := range ds {
			if strings.TrimSpace(d.ID) == "" {
				t.Fatal("a device without an id")
			}
			if ids[d.ID] {
				t.Fatalf("device_id %q twice", d.ID)
			}
			ids[d.ID] = true
			if strings.ContainsFunc(d.ID+d.Email, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("a control character in %q or %q", d.ID, d.Email)
			}
			for _, v := range []string{d.ID, d.Email, d.Serial, d.MAC, d.VirtualIPv4, d.Hostname} {
				if len(v) > cloudflare.MaxFieldLen {
					t.Fatalf("a field of %d bytes", len(v))
				}
				if !utf8.ValidString(v) || strings.ContainsRune(v, utf8.RuneError) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
					t.Fatalf("a field %q kept", v)
				}
			}
		}
	})
}
