// Package macho merges thin Mach-O executables into one universal ("fat")
// binary, as lipo does, so that one file runs natively on Intel and Apple
// silicon Macs.
//
// A fat file is a big-endian header (magic 0xCAFEBABE, count), one fat_arch
// record per slice (cputype, cpusubtype, offset, size, alignment as a power
// of two), then each slice at an offset aligned to the page size of its
// architecture.
package macho

import (
	"bytes"
	"debug/macho"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

const fatMagic = 0xCAFEBABE

// alignShift returns log2 of the slice alignment for cpu: 16 KiB pages on
// arm64, 4 KiB on x86_64, matching what lipo writes.
func alignShift(cpu macho.Cpu) (uint32, error) {
	switch cpu {
	case macho.CpuArm64:
		return 14, nil
	case macho.CpuAmd64:
		return 12, nil
	}
	return 0, fmt.Errorf("macho: unsupported architecture %v", cpu)
}

type slice struct {
	cpu    macho.Cpu
	subcpu uint32
	data   []byte
	align  uint32
}

// Fat returns a universal binary holding each of thins, which must be
// 64-bit Mach-O files of distinct architectures (arm64, x86_64). Slices are
// ordered by CPU type so the result does not depend on argument order.
func Fat(thins ...[]byte) ([]byte, error) {
	if len(thins) == 0 {
		return nil, fmt.Errorf("macho: no input binaries")
	}
	var slices []slice
	seen := map[macho.Cpu]bool{}
	for i, b := range thins {
		f, err := macho.NewFile(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("macho: input %d: %w", i, err)
		}
		if f.Magic != macho.Magic64 {
			return nil, fmt.Errorf("macho: input %d: not a 64-bit Mach-O file", i)
		}
		shift, err := alignShift(f.Cpu)
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		if seen[f.Cpu] {
			return nil, fmt.Errorf("macho: architecture %v given twice", f.Cpu)
		}
		seen[f.Cpu] = true
		slices = append(slices, slice{cpu: f.Cpu, subcpu: f.SubCpu, data: b, align: shift})
	}
	sort.Slice(slices, func(i, j int) bool { return slices[i].cpu < slices[j].cpu })

	// 1. Header and arch records.
	var out bytes.Buffer
	binary.Write(&out, binary.BigEndian, [2]uint32{fatMagic, uint32(len(slices))})
	offset := uint64(8 + 20*len(slices))
	offsets := make([]uint64, len(slices))
	for i, s := range slices {
		a := uint64(1) << s.align
		offset = (offset + a - 1) &^ (a - 1)
		offsets[i] = offset
		offset += uint64(len(s.data))
	}
	if offset > 1<<32-1 {
		return nil, fmt.Errorf("macho: %d bytes is too large for a 32-bit fat file", offset)
	}
	for i, s := range slices {
		binary.Write(&out, binary.BigEndian, [5]uint32{
			uint32(s.cpu), s.subcpu, uint32(offsets[i]), uint32(len(s.data)), s.align,
		})
	}
	// 2. Slices, zero-padded up to their offsets.
	for i, s := range slices {
		out.Write(make([]byte, int(offsets[i])-out.Len()))
		out.Write(s.data)
	}
	return out.Bytes(), nil
}

// WriteFat writes the universal binary for thins to w.
func WriteFat(w io.Writer, thins ...[]byte) error {
	b, err := Fat(thins...)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
