package cpustat

import (
	"io"
	"os"
)

// Read returns the times summed over every CPU since boot.
func Read() (Times, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return Times{}, err
	}
	defer f.Close()
	// The aggregate line comes first; the rest (a line per CPU,
	// interrupts) is not read.
	b, err := io.ReadAll(io.LimitReader(f, maxLine+1))
	if err != nil {
		return Times{}, err
	}
	return Parse(b)
}
