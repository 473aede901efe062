package osquerysim

import (
	"reflect"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		l, r  string
		rules versionRules
		want  int
	}{
		{"15.10", "15.9", rulesGeneric, 1},
		{"15.9", "15.10", rulesGeneric, -1},
		{"15.6.1", "15.6", rulesGeneric, 1},
		{"15.6", "15.6.1", rulesGeneric, -1},
		{"14.6", "14.6", rulesGeneric, 0},
		{"", "1", rulesGeneric, -1},
		{"1", "", rulesGeneric, 1},
		{"1.2a", "1.2b", rulesGeneric, -1},
		{"10", "9", rulesGeneric, 1},
		{"1:1.0", "2.0", rulesDPKG, 1},
		{"2.0", "1:1.0", rulesDPKG, -1},
		{"1.0~rc1", "1.0", rulesRHEL, -1},
		{"1.0^git", "1.0", rulesRHEL, 1},
		{"1.0-1", "1.0.1", rulesDPKG, -1},
	}
	for _, tc := range tests {
		if got := sign(compareVersions(tc.l, tc.r, tc.rules)); got != tc.want {
			t.Errorf("compareVersions(%q, %q, %+v) = %d, want %d", tc.l, tc.r, tc.rules, got, tc.want)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"SELECT 1", []string{"SELECT 1"}},
		{"SELECT 1;", []string{"SELECT 1"}},
		{" SELECT 1 ; SELECT 2 ;; ", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT ';' AS a; SELECT 2", []string{"SELECT ';' AS a", "SELECT 2"}},
		{`SELECT "a;b", 'it''s;' FROM t`, []string{`SELECT "a;b", 'it''s;' FROM t`}},
		{"SELECT [x;y] FROM t; SELECT `p;q`", []string{"SELECT [x;y] FROM t", "SELECT `p;q`"}},
		{"SELECT 1 -- a; comment\n; SELECT 2", []string{"SELECT 1 -- a; comment", "SELECT 2"}},
		{"SELECT /* ; */ 1; /* only */; -- tail", []string{"SELECT /* ; */ 1"}},
		{"SELECT 'unterminated;", []string{"SELECT 'unterminated;"}},
		{"", nil},
		{"  \n-- nothing", nil},
	}
	for _, tc := range tests {
		if got := splitStatements(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitStatements(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValues(t *testing.T) {
	ints := map[string]int64{"0": 0, "42": 42, "-1": -1, "+7": 7, "0x1F": 31, "010": 8, "-9223372036854775808": -1 << 63}
	for s, want := range ints {
		got, err := parseCInt(s)
		if err != nil || got != want {
			t.Errorf("parseCInt(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "x", "1.0", "1_000", "9223372036854775808", "08", "--1", " 1"} {
		if _, err := parseCInt(s); err == nil {
			t.Errorf("parseCInt(%q) succeeded", s)
		}
	}
	strs := []struct {
		v    any
		want string
	}{{nil, ""}, {int64(-3), "-3"}, {2.5, "2.5"}, {3.0, "3.0"}, {1e-7, "9.9999999999999995e-08"}, {"x", "x"}, {[]byte("b"), "b"}}
	for _, tc := range strs {
		if got := resultString(tc.v); got != tc.want {
			t.Errorf("resultString(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestSDKAtLeast(t *testing.T) {
	tests := []struct {
		sdk  string
		want bool
	}{{"", true}, {"1.7.7", true}, {"1.8.0", true}, {"2", true}, {"1.7.6", false}, {"0.9", false}, {"0.0.0", true}}
	for _, tc := range tests {
		if got := sdkAtLeast("1.7.7", tc.sdk); got != tc.want {
			t.Errorf("sdkAtLeast(1.7.7, %q) = %v, want %v", tc.sdk, got, tc.want)
		}
	}
}
