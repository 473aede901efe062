package cli

import (
	"strings"

	"github.com/clearance/clearance/pkg/spelling"
)

// maxSuggestLen bounds the words Suggest compares: a longer one is not a
// typo of any name here, and the distance costs len² to compute.
const maxSuggestLen = 64

// Suggest returns the candidate that name most likely misspells, or "".
// Leading dashes are ignored when comparing, so "--polices" finds
// "--policies". A candidate is close when it is at most one edit away per
// three characters (at least one), or when name is a prefix of it of three
// or more characters.
func Suggest(name string, candidates []string) string {
	word := strings.TrimLeft(name, "-")
	if word == "" || len(word) > maxSuggestLen {
		return ""
	}
	best, bestDist := "", -1
	for _, c := range candidates {
		cw := strings.TrimLeft(c, "-")
		if len(cw) > maxSuggestLen {
			continue
		}
		d := spelling.Distance(word, cw)
		if d > max(1, len(word)/3) && !(len(word) >= 3 && strings.HasPrefix(cw, word)) {
			continue
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}
