package macho

import (
	"bytes"
	"debug/macho"
	"os"
	"path/filepath"
	"testing"

	gomacho "github.com/blacktop/go-macho"
	"github.com/clearance/clearance/packaging/internal/agentbuild"
)

func TestFatAgentReadsAsTwoExecutables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	arm64, amd64, err := agentbuild.BuildBoth("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	// Argument order must not change the result.
	fat, err := Fat(arm64, amd64)
	if err != nil {
		t.Fatal(err)
	}
	fat2, err := Fat(amd64, arm64)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fat, fat2) {
		t.Error("argument order changed the fat binary")
	}
	path := filepath.Join(dir, "clearance-agent")
	if err := os.WriteFile(path, fat, 0o755); err != nil {
		t.Fatal(err)
	}

	// Go's own reader.
	ff, err := macho.OpenFat(path)
	if err != nil {
		t.Fatalf("debug/macho cannot open the fat binary: %v", err)
	}
	defer ff.Close()
	if ff.Magic != macho.MagicFat {
		t.Errorf("magic %#x", ff.Magic)
	}
	if len(ff.Arches) != 2 {
		t.Fatalf("%d arches, want 2", len(ff.Arches))
	}
	want := []struct {
		cpu    macho.Cpu
		subcpu uint32
		align  uint32
		thin   []byte
	}{
		{macho.CpuAmd64, 3, 12, amd64},
		{macho.CpuArm64, 0, 14, arm64},
	}
	for i, a := range ff.Arches {
		w := want[i]
		if a.Cpu != w.cpu || a.SubCpu != w.subcpu || a.Align != w.align {
			t.Errorf("arch %d: cpu %v sub %d align 2^%d, want %v %d 2^%d", i, a.Cpu, a.SubCpu, a.Align, w.cpu, w.subcpu, w.align)
		}
		if a.Offset%(1<<a.Align) != 0 {
			t.Errorf("arch %v: offset %d not aligned to 2^%d", a.Cpu, a.Offset, a.Align)
		}
		if a.Type != macho.TypeExec || a.Magic != macho.Magic64 {
			t.Errorf("arch %v: type %v magic %#x, want a 64-bit executable", a.Cpu, a.Type, a.Magic)
		}
		if a.Symtab == nil || len(a.Loads) == 0 {
			t.Errorf("arch %v: no load commands or symbols", a.Cpu)
		}
		if !bytes.Equal(fat[a.Offset:a.Offset+a.Size], w.thin) {
			t.Errorf("arch %v: slice bytes differ from the thin input", a.Cpu)
		}
	}

	// A second, independent reader.
	gf, err := gomacho.OpenFat(path)
	if err != nil {
		t.Fatalf("go-macho cannot open the fat binary: %v", err)
	}
	defer gf.Close()
	if len(gf.Arches) != 2 {
		t.Fatalf("go-macho: %d arches, want 2", len(gf.Arches))
	}
	for _, a := range gf.Arches {
		if a.FileTOC.FileHeader.Type.String() != "EXECUTE" && a.FileTOC.FileHeader.Type.String() != "MH_EXECUTE" {
			t.Errorf("go-macho: arch %v is %v, want an executable", a.CPU, a.FileTOC.FileHeader.Type)
		}
	}
}

func TestFatRejects(t *testing.T) {
	t.Parallel()
	if _, err := Fat(); err == nil {
		t.Error("no inputs accepted")
	}
	if _, err := Fat([]byte("#!/bin/sh\n")); err == nil {
		t.Error("a script accepted as Mach-O")
	}
	// A minimal x86_64 header with no load commands is a valid Mach-O.
	hdr := []byte{0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := Fat(hdr); err != nil {
		t.Fatalf("minimal header: %v", err)
	}
	if _, err := Fat(hdr, hdr); err == nil {
		t.Error("the same architecture twice accepted")
	}
	i386 := bytes.Clone(hdr)
	i386[4], i386[7] = 7, 0 // cputype x86 (32-bit)
	if _, err := Fat(i386); err == nil {
		t.Error("unsupported architecture accepted")
	}
}
