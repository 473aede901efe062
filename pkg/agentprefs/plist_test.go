package agentprefs

import (
	"maps"
	"strings"
	"testing"
)

const plistHead = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
`

func plistDoc(entries ...string) string {
	return plistHead + strings.Join(entries, "\n") + "\n</dict></plist>\n"
}

func TestParsePlist(t *testing.T) {
	t.Parallel()
	got, _, err := ParsePlist([]byte(plistDoc(
		"<key>VerifierAddress</key><string>v.example:443</string>",
		"<key>Interval</key><integer>90</integer>",
		"<key>LogLevel</key><string>not checked here</string>",
		"<key>PayloadUUID</key><string>9F0C1E55-0000-4000-8000-000000000000</string>",
		"<key>PayloadVersion</key><integer>1</integer>",
	)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"VerifierAddress": "v.example:443", "Interval": "90s", "LogLevel": "not checked here"}
	if !maps.Equal(got, want) {
		t.Errorf("ParsePlist = %v, want %v", got, want)
	}
	if got, _, err := ParsePlist([]byte(plistDoc())); err != nil || len(got) != 0 {
		t.Errorf("empty dict: %v, %v", got, err)
	}
}

func TestParsePlistRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, want string
	}{
		{"empty input", "", "not a valid plist"},
		{"not XML", "VerifierAddress = v:1", "not a valid plist"},
		{"truncated", plistHead + "<key>VerifierAddress</key><string>x", "not a valid plist"},
		{"top level an array", `<?xml version="1.0"?><plist version="1.0"><array/></plist>`, "the top level must be a dictionary, not an array"},
		{"top level a string", `<?xml version="1.0"?><plist version="1.0"><string>x</string></plist>`, "the top level must be a dictionary, not a string"},
		{"a known key misspelt", plistDoc("<key>VerifierAddres</key><string>v:1</string>"), `unknown key "VerifierAddres": did you mean VerifierAddress? (known keys: VerifierAddress, CAFile,`},
		{"a known key in another case", plistDoc("<key>cafingerprint</key><string>ab</string>"), `unknown key "cafingerprint": did you mean CAFingerprint?`},
		{"the pin misspelt", plistDoc("<key>CAFingerprnt</key><string>ab</string>"), `did you mean CAFingerprint?`},
		{"a pin under another name", plistDoc("<key>CAFingerprintSHA256</key><string>ab</string>"), `did you mean CAFingerprint?`},
		{"a pin as a word", plistDoc("<key>RootCAPin</key><string>ab</string>"), `unknown key "RootCAPin": did you mean`},
		{"a CA under another name", plistDoc("<key>CACertificate</key><string>ab</string>"), `did you mean CAPEM?`},
		{"CAs", plistDoc("<key>CAs</key><string>ab</string>"), `did you mean CAPEM?`},
		{"server pins", plistDoc("<key>ServerPins</key><string>ab</string>"), `did you mean CAFingerprint?`},
		{"TLS roots", plistDoc("<key>TLSRoots</key><string>ab</string>"), `did you mean CAPEM?`},
		{"a thumbprint", plistDoc("<key>Thumbprint</key><string>ab</string>"), `did you mean CAFingerprint?`},
		{"trusted certificates", plistDoc("<key>TrustedCerts</key><string>ab</string>"), `did you mean CAPEM?`},
		{"a pin in lower case", plistDoc("<key>certpin</key><string>ab</string>"), `unknown key "certpin": did you mean`},
		{"a certificate hash", plistDoc("<key>ServerCertHash</key><string>ab</string>"), `did you mean CAPEM?`},
		{"an SPKI hash", plistDoc("<key>SPKIHash</key><string>ab</string>"), `did you mean CAFingerprint?`},
		{"an array of browsers holding a non-string", plistDoc("<key>PresenceBrowsers</key><array><integer>1</integer></array>"), "each item of the array must be a string"},
		{"boolean", plistDoc("<key>VerifierAddress</key><true/>"), "key VerifierAddress must be a string, not a boolean"},
		{"integer where a string belongs", plistDoc("<key>LogLevel</key><integer>1</integer>"), "key LogLevel must be a string, not an integer"},
		{"real interval", plistDoc("<key>Interval</key><real>1.5</real>"), "key Interval must be a string, not a real"},
		{"nested dict", plistDoc("<key>CAPEM</key><dict/>"), "key CAPEM must be a string, not a dictionary"},
		{"array", plistDoc("<key>StateDir</key><array><string>/a</string></array>"), "key StateDir must be a string, not an array"},
		{"data", plistDoc("<key>EnrollSecret</key><data>aGk=</data>"), "key EnrollSecret must be a string, not data"},
		{"date", plistDoc("<key>CAFile</key><date>2030-01-01T00:00:00Z</date>"), "key CAFile must be a string, not a date"},
		{"deep nesting", plistDoc("<key>CAPEM</key>" + strings.Repeat("<array>", 5000) + strings.Repeat("</array>", 5000)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, _, err := ParsePlist([]byte(tt.doc))
			if err == nil {
				t.Fatalf("ParsePlist accepted it: %v", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Integer intervals become seconds; the validator then judges them like
// any other value.
// TestParsePlistIntegerDurations: a plist integer in a duration key is
// seconds, checked by the key's own bounds.
func TestParsePlistIntegerDurations(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ key, doc, want string }{
		{KeyInterval, "<integer>300</integer>", ""},
		{KeyInterval, "<integer>0</integer>", "shorter than the minimum"},
		{KeyInterval, "<integer>-5</integer>", "shorter than the minimum"},
		{KeyInterval, "<integer>18446744073709551615</integer>", "not a duration"},
		{KeyRunBudget, "<integer>180</integer>", ""},
		{KeyRunBudget, "<integer>9</integer>", "shorter than the minimum"},
		{KeyRunBudget, "<integer>181</integer>", "longer than the maximum"},
		{KeyRunBudget, "<integer>18446744073709551615</integer>", "not a duration"},
	} {
		got, _, err := ParsePlist([]byte(plistDoc("<key>" + tt.key + "</key>" + tt.doc)))
		if err != nil {
			t.Errorf("%s %s: %v", tt.key, tt.doc, err)
			continue
		}
		err = Check(tt.key, got[tt.key])
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s %s (%q): Check = %v, want %q", tt.key, tt.doc, got[tt.key], err, tt.want)
		}
	}
}

// FuzzParsePlist: no input panics ParsePlist, and whatever it returns names
// only known keys.
func FuzzParsePlist(f *testing.F) {
	f.Add([]byte(plistDoc("<key>VerifierAddress</key><string>v.example:443</string>", "<key>Interval</key><integer>90</integer>")))
	f.Add([]byte(plistDoc("<key>PayloadUUID</key><string>x</string>")))
	f.Add([]byte(`<?xml version="1.0"?><plist version="1.0"><array/></plist>`))
	f.Add([]byte("bplist00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, unknown, err := ParsePlist(data)
		if err != nil {
			if got != nil || unknown != nil {
				t.Fatalf("values alongside an error: %v %v", got, unknown)
			}
			return
		}
		for _, k := range unknown {
			if _, ok := lookup(k); ok || misspelt(k) != "" {
				t.Fatalf("key %q returned as unknown", k)
			}
		}
		for k, v := range got {
			if _, ok := lookup(k); !ok {
				t.Fatalf("unknown key %q returned", k)
			}
			_ = Check(k, v) // must not panic
		}
	})
}

// A key no agent knows, far from every known key (one a newer agent
// reads, say), is returned, not refused, so that it stops no agent; an
// array of browsers is their comma-separated list.
func TestParsePlistUnknownKeys(t *testing.T) {
	t.Parallel()
	got, unknown, err := ParsePlist([]byte(plistDoc(
		"<key>VerifierAddress</key><string>v.example:443</string>",
		"<key>ReportProxy</key><string>http://proxy:3128</string>",
		"<key>CapacityHint</key><string>x</string>", // "Ca", not the word CA
		"<key>LogRetention</key><string>x</string>",
		"<key>PresenceBrowsers</key><array><string>EQHXZ8M8AV</string><string>BJ4HAAB9B3</string></array>",
	)))
	if err != nil || got[KeyVerifier] != "v.example:443" || got[KeyPresenceBrowsers] != "EQHXZ8M8AV,BJ4HAAB9B3" || strings.Join(unknown, ",") != "CapacityHint,LogRetention,ReportProxy" {
		t.Fatalf("ParsePlist = %v, %v, %v", got, unknown, err)
	}
}

// TestParsePlistErrorsQuoteNoValue: a plist that does not read is refused
// with an error that quotes none of its values, the enroll secret put
// where it does not belong included: the error goes to the agent's log,
// to status and to the verifier with the agent's reports.
func TestParsePlistErrorsQuoteNoValue(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-4pp13-s4uc3"
	for _, tt := range []struct{ name, doc, want string }{
		{"an integer", plistDoc("<key>EnrollSecret</key><integer>" + secret + "</integer>"), "an <integer> or <real> holds something other than a number"},
		{"a negative integer", plistDoc("<key>EnrollSecret</key><integer>-" + secret + "</integer>"), "an <integer> or <real>"},
		{"a real", plistDoc("<key>EnrollSecret</key><real>" + secret + "</real>"), "an <integer> or <real>"},
		{"a date", plistDoc("<key>EnrollSecret</key><date>" + secret + "</date>"), "a <date> holds something other than a date"},
		{"an unescaped &", plistDoc("<key>EnrollSecret</key><string>s3cr3t-4pp13&s4uc3</string>"), "on line 4: an & that starts no character entity (write &amp; for &)"},
		{"data", plistDoc("<key>EnrollSecret</key><data>" + secret + "</data>"), "illegal base64 data"},
		{"a tag misspelt", plistDoc("<key>EnrollSecret</key><string>s3cr3t</strin>"), "element <string> closed by </strin>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ParsePlist([]byte(tt.doc))
			if err == nil {
				t.Fatal("ParsePlist accepted it")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			for _, part := range []string{"s3cr3t", "4pp13", "s4uc3"} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("error %q quotes the value", err)
				}
			}
		})
	}
}
