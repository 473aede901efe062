package cli

import "strings"

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
		d := distance(word, cw)
		if d > max(1, len(word)/3) && !(len(word) >= 3 && strings.HasPrefix(cw, word)) {
			continue
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes.
func distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
