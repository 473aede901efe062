package spelling

import "testing"

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"policies", "policies", 0},
		{"polices", "policies", 1}, {"poilcies", "policies", 1}, // a swap costs one
		{"kitten", "sitting", 3}, {"ca", "abc", 3}, // optimal string alignment, not Damerau: 3, not 2
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
