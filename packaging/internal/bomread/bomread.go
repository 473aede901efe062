// Package bomread lists the paths of a Bom file. It exists for tests: it is
// written from the BOMStore format description alone and shares no code or
// types with the writer in packaging/bom, so it checks that writer
// independently.
package bomread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Path is one path as a Bom records it.
type Path struct {
	Path     string // full path, e.g. "./usr/local"
	Type     byte   // 1 file, 2 directory, 3 link
	Mode     uint16 // unix mode including type bits
	UID, GID uint32
	ModTime  uint32
	Size     uint32
	Checksum uint32
	Link     string
}

type reader struct {
	b        []byte
	indexOff uint32
	nPtrs    uint32
	err      error
}

func (r *reader) u32(off uint32) uint32 {
	if r.err != nil || uint64(off)+4 > uint64(len(r.b)) {
		r.fail("read past end at %d", off)
		return 0
	}
	return binary.BigEndian.Uint32(r.b[off:])
}

func (r *reader) u16(off uint32) uint16 {
	if r.err != nil || uint64(off)+2 > uint64(len(r.b)) {
		r.fail("read past end at %d", off)
		return 0
	}
	return binary.BigEndian.Uint16(r.b[off:])
}

func (r *reader) slice(off, n uint32) []byte {
	if r.err != nil || uint64(off)+uint64(n) > uint64(len(r.b)) {
		r.fail("read past end at %d+%d", off, n)
		return nil
	}
	return r.b[off : off+n]
}

func (r *reader) fail(format string, a ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("bom: "+format, a...)
	}
}

// block returns the address and length of block id.
func (r *reader) block(id uint32) (uint32, uint32) {
	if id == 0 || id >= r.nPtrs {
		r.fail("block id %d out of range", id)
		return 0, 0
	}
	p := r.indexOff + 4 + 8*id
	return r.u32(p), r.u32(p + 4)
}

// Read lists the paths of the Bom in b, in tree order. It checks the
// header, the block index, the presence of the standard variables, and that
// the path count in the tree matches its leaves.
func Read(b []byte) ([]Path, error) {
	if len(b) < 512 || string(b[:8]) != "BOMStore" {
		return nil, errors.New("bom: not a BOMStore file")
	}
	r := &reader{b: b}
	if v := r.u32(8); v != 1 {
		return nil, fmt.Errorf("bom: version %d", v)
	}
	nonNull := r.u32(12)
	r.indexOff = r.u32(16)
	indexLen, varsOff := r.u32(20), r.u32(24)
	if uint64(r.indexOff)+uint64(indexLen) != uint64(len(b)) {
		return nil, fmt.Errorf("bom: index ends at %d, file is %d bytes", r.indexOff+indexLen, len(b))
	}
	r.nPtrs = r.u32(r.indexOff)
	var used uint32
	for i := uint32(1); i < r.nPtrs && r.err == nil; i++ {
		if _, l := r.block(i); l != 0 {
			used++
		}
	}
	if used != nonNull {
		r.fail("header says %d blocks, index has %d", nonNull, used)
	}

	vars := map[string]uint32{}
	at := varsOff + 4
	for range r.u32(varsOff) {
		id := r.u32(at)
		l := uint32(r.slice(at+4, 1)[0])
		vars[string(r.slice(at+5, l))] = id
		at += 5 + l
	}
	if r.err != nil {
		return nil, r.err
	}
	for _, v := range []string{"BomInfo", "Paths", "HLIndex", "VIndex", "Size64"} {
		if _, ok := vars[v]; !ok {
			return nil, fmt.Errorf("bom: variable %s missing", v)
		}
	}
	treeAt, _ := r.block(vars["Paths"])
	if string(r.slice(treeAt, 4)) != "tree" {
		r.fail("Paths is not a tree")
	}
	node, _ := r.block(r.u32(treeAt + 8))
	pathCount := r.u32(treeAt + 16)
	// Descend along first children to the leftmost leaf.
	for depth := 0; r.err == nil && r.u16(node) == 0; depth++ {
		if depth > 32 {
			r.fail("tree too deep")
		}
		node, _ = r.block(r.u32(node + 12))
	}

	names := map[uint32]string{}
	var out []Path
	for hops := 0; r.err == nil; hops++ {
		count := uint32(r.u16(node + 2))
		for i := uint32(0); i < count && r.err == nil; i++ {
			info1, _ := r.block(r.u32(node + 12 + 8*i))
			fileAt, fileLen := r.block(r.u32(node + 16 + 8*i))
			id := r.u32(info1)
			info2, _ := r.block(r.u32(info1 + 4))
			parent := r.u32(fileAt)
			name := string(bytes.TrimRight(r.slice(fileAt+4, fileLen-4), "\x00"))
			full := name
			if parent != 0 {
				p, ok := names[parent]
				if !ok {
					r.fail("%s: parent %d not listed before it", name, parent)
				}
				full = p + "/" + name
			}
			names[id] = full
			p := Path{
				Path: full, Type: r.slice(info2, 1)[0], Mode: r.u16(info2 + 4),
				UID: r.u32(info2 + 6), GID: r.u32(info2 + 10), ModTime: r.u32(info2 + 14),
				Size: r.u32(info2 + 18), Checksum: r.u32(info2 + 23),
			}
			if ll := r.u32(info2 + 27); ll > 0 {
				p.Link = string(bytes.TrimRight(r.slice(info2+31, ll), "\x00"))
			}
			out = append(out, p)
		}
		fwd := r.u32(node + 4)
		if fwd == 0 {
			break
		}
		if hops > len(b) {
			r.fail("leaf links loop")
		}
		node, _ = r.block(fwd)
	}
	if r.err != nil {
		return nil, r.err
	}
	if uint32(len(out)) != pathCount {
		return nil, fmt.Errorf("bom: tree says %d paths, leaves hold %d", pathCount, len(out))
	}
	return out, nil
}
