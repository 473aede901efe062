package cloudflare_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

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
		"field too long":      `{"devices":[{"device_id":"a","hostname":"` + long + `"}]}`,
		"invalid UTF-8":       "{\"devices\":[{\"device_id\":\"a\xff\"}]}",
		"trailing data":       `{"devices":[]} {"devices":[]}`,
		"truncated":           `{"devices":[{"device_id":"a"}`,
		"deeply nested value": `{"devices":[{"device_id":"a","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}]}`,
	} {
		if got, err := cloudflare.DecodeRequest(strings.NewReader(body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, got)
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
		for _, d := range ds {
			if strings.TrimSpace(d.ID) == "" {
				t.Fatal("a device without an id")
			}
			for _, v := range []string{d.ID, d.Email, d.Serial, d.MAC, d.VirtualIPv4, d.Hostname} {
				if len(v) > cloudflare.MaxFieldLen {
					t.Fatalf("a field of %d bytes", len(v))
				}
			}
		}
	})
}
