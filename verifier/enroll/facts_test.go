package enroll

import (
	"strings"
	"testing"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

func TestCheckFacts(t *testing.T) {
	t.Parallel()
	const uuid = "0A1B2C3D-0000-4000-8000-000000000001"
	for _, tc := range []struct {
		name  string
		facts *agentv1.DeviceFacts
		want  string // "" accepts
	}{
		{"plain", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: "alices-mbp", SerialNumber: "C02XK1ABJGH5"}, ""},
		{"honest unicode name", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: "Jane’s MacBook Pro 👩\u200d💻 日本"}, ""},
		{"missing", nil, "facts are missing"},
		{"not a UUID", &agentv1.DeviceFacts{HardwareUuid: "nope"}, "hardware_uuid"},
		{"C1 CSI in host name", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: "evil\u009b31m\u009d0;PWNED-TITLE\u009c"}, "hostname has control character U+009B at byte 4"},
		{"C1 in serial", &agentv1.DeviceFacts{HardwareUuid: uuid, SerialNumber: "SER\u009b1;31mRED"}, "serial_number has control character U+009B at byte 3"},
		{"ESC in model", &agentv1.DeviceFacts{HardwareUuid: uuid, Model: "Mac\x1b[2J"}, "model has control character U+001B"},
		{"newline in OS version", &agentv1.DeviceFacts{HardwareUuid: uuid, OsVersion: "15.1\n"}, "os_version has control character U+000A"},
		{"DEL in agent version", &agentv1.DeviceFacts{HardwareUuid: uuid, AgentVersion: "1.0\x7f"}, "agent_version has control character U+007F"},
		{"right-to-left override", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: "\u202eTXEN"}, "hostname has bidirectional control character U+202E at byte 0"},
		{"isolate", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: "a\u2067b"}, "hostname has bidirectional control character U+2067"},
		{"too long", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: strings.Repeat("a", 256)}, "hostname is 256 bytes"},
		{"not UTF-8", &agentv1.DeviceFacts{HardwareUuid: uuid, Hostname: "a\xff"}, "hostname is not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFacts(tc.facts)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}
