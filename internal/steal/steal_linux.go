package steal

import (
	"io"
	"os"
	"time"
)

// Total is the steal time summed over every CPU since boot.
func Total() (time.Duration, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// The aggregate line comes first; the rest (a line per CPU,
	// interrupts) is not read.
	b, err := io.ReadAll(io.LimitReader(f, maxLine+1))
	if err != nil {
		return 0, err
	}
	return Parse(b)
}
