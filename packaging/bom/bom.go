// Package bom writes Bom ("bill of materials", BOMStore) files: the list of
// paths, owners, modes, sizes and checksums that macOS Installer keeps in a
// component package and records in its receipts.
//
// A BOMStore file is a 512-byte header, a table of named variables, data
// blocks, and an index of block addresses; all integers are big-endian. The
// "Paths" variable is a B-tree whose leaves point, for each path, at its
// attributes and at its name with the id of its parent.
package bom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"sort"
	"strings"
	"time"
)

// Entry is one path of the bill of materials.
type Entry struct {
	// Path as in the Payload: "." for the install root, "./usr/local" below it.
	Path     string
	Mode     fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	UID, GID uint32
	ModTime  time.Time
	Size     int64  // file size; link target length for links; ignored for directories
	Checksum uint32 // Checksum of the content (of the target for links)
	Link     string // symbolic link target
}

// Path types in a BOMPathInfo block.
const (
	typeFile = 1
	typeDir  = 2
	typeLink = 3
)

const (
	headerSize = 512
	// pathsPerLeaf is how many paths one leaf holds, as mkbom does.
	pathsPerLeaf = 256
	// arch is the architecture field Apple's tools and mkbom write for
	// ordinary paths.
	arch = 3
)

// Build returns the Bom for entries. Every path's parent directory must be
// among the entries, and "." must be present.
func Build(entries []Entry) ([]byte, error) {
	// 1. Check paths and number them the way the tree is keyed: breadth
	//    first, each directory's children sorted by name, so the
	//    order (parent id, name) is ascending.
	type item struct {
		e      Entry
		id     uint32
		parent uint32
		name   string
	}
	byPath := map[string]*item{}
	children := map[string][]*item{}
	for _, e := range entries {
		p := e.Path
		rel, ok := strings.CutPrefix(p, "./")
		if p != "." && (!ok || rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../")) {
			return nil, fmt.Errorf("bom: path %q must be \".\" or start with \"./\" and be clean", p)
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("bom: duplicate path %q", p)
		}
		if t := e.Mode.Type(); t != 0 && t != fs.ModeDir && t != fs.ModeSymlink {
			return nil, fmt.Errorf("bom: %s: unsupported type %v", p, t)
		}
		if e.Size < 0 || e.Size > math.MaxUint32 {
			return nil, fmt.Errorf("bom: %s: size %d does not fit in 32 bits", p, e.Size)
		}
		it := &item{e: e, name: path.Base(p)}
		byPath[p] = it
		if p != "." {
			children[parentOf(rel)] = append(children[parentOf(rel)], it)
		}
	}
	root, ok := byPath["."]
	if !ok {
		return nil, errors.New(`bom: the root "." is missing`)
	}
	for dir := range children {
		d, ok := byPath[dir]
		if !ok || !d.e.Mode.IsDir() {
			return nil, fmt.Errorf("bom: %q is not a directory among the entries", dir)
		}
	}
	var order []*item
	queue := []*item{root}
	root.name = "."
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		it.id = uint32(len(order) + 1)
		order = append(order, it)
		kids := children[it.e.Path]
		sort.Slice(kids, func(i, j int) bool { return kids[i].name < kids[j].name })
		for _, k := range kids {
			k.parent = it.id
			queue = append(queue, k)
		}
	}

	s := &store{}

	// 2. Per path: its attributes, its id, its name.
	type leafIndex struct{ info1, file uint32 }
	idx := make([]leafIndex, 0, len(order))
	for _, it := range order {
		info2, err := pathInfo(it.e)
		if err != nil {
			return nil, err
		}
		info2ID := s.add(info2)
		info1ID := s.add(be(it.id, info2ID))
		name := append(be(it.parent), it.name...)
		fileID := s.add(append(name, 0))
		idx = append(idx, leafIndex{info1ID, fileID})
	}

	// 3. Leaves of up to pathsPerLeaf paths, linked both ways; a branch
	//    above them when there is more than one. Leaf ids are consecutive,
	//    so the links are known before the blocks are written.
	nLeaves := (len(idx) + pathsPerLeaf - 1) / pathsPerLeaf
	first := s.next()
	var branch bytes.Buffer
	branch.Write(be16(0, uint16(nLeaves)))
	branch.Write(be(0, 0))
	for l := 0; l < nLeaves; l++ {
		chunk := idx[l*pathsPerLeaf : min(len(idx), (l+1)*pathsPerLeaf)]
		var fwd, back uint32
		if l > 0 {
			back = first + uint32(l) - 1
		}
		if l < nLeaves-1 {
			fwd = first + uint32(l) + 1
		}
		var leaf bytes.Buffer
		leaf.Write(be16(1, uint16(len(chunk))))
		leaf.Write(be(fwd, back))
		for _, c := range chunk {
			leaf.Write(be(c.info1, c.file))
		}
		id := s.add(leaf.Bytes())
		// A branch entry is keyed by the last path of its leaf.
		branch.Write(be(id, chunk[len(chunk)-1].file))
	}
	top := first
	if nLeaves > 1 {
		top = s.add(branch.Bytes())
	}

	// 4. The variables: BomInfo, the Paths tree, and the empty hard-link,
	//    VIndex and Size64 trees Installer expects to find.
	info := be(1, uint32(len(order)+1), 1, 0, 0, 0, 0)
	vars := []struct {
		name string
		id   uint32
	}{
		{"BomInfo", s.add(info)},
		{"Paths", s.add(tree(top, 4096, uint32(len(order))))},
		{"HLIndex", s.add(tree(s.add(emptyLeaf()), 4096, 0))},
		{"VIndex", s.add(append(be(1, s.add(tree(s.add(emptyLeaf()), 128, 0)), 0), 0))},
		{"Size64", s.add(tree(s.add(emptyLeaf()), 4096, 0))},
	}
	var vb bytes.Buffer
	vb.Write(be(uint32(len(vars))))
	for _, v := range vars {
		vb.Write(be(v.id))
		vb.WriteByte(byte(len(v.name)))
		vb.WriteString(v.name)
	}
	return s.bytes(vb.Bytes()), nil
}

// Write writes the Bom for entries to w.
func Write(w io.Writer, entries []Entry) error {
	b, err := Build(entries)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func pathInfo(e Entry) ([]byte, error) {
	typ, unixType := byte(typeFile), uint32(0o100000)
	size := uint32(e.Size)
	switch {
	case e.Mode.IsDir():
		typ, unixType, size = typeDir, 0o040000, 0
	case e.Mode&fs.ModeSymlink != 0:
		typ, unixType = typeLink, 0o120000
		if e.Link == "" {
			return nil, fmt.Errorf("bom: %s: symbolic link without a target", e.Path)
		}
	}
	var mtime uint32
	if !e.ModTime.IsZero() {
		mtime = uint32(e.ModTime.Unix())
	}
	var b bytes.Buffer
	b.WriteByte(typ)
	b.WriteByte(1)
	b.Write(be16(arch, uint16(unixType|uint32(e.Mode.Perm()))))
	b.Write(be(e.UID, e.GID, mtime, size))
	b.WriteByte(1)
	b.Write(be(e.Checksum))
	if typ == typeLink {
		b.Write(be(uint32(len(e.Link) + 1)))
		b.WriteString(e.Link)
		b.WriteByte(0)
	} else {
		b.Write(be(0))
	}
	return b.Bytes(), nil
}

// parentOf returns the Bom path of the directory holding rel, a clean
// relative path.
func parentOf(rel string) string {
	if d := path.Dir(rel); d != "." {
		return "./" + d
	}
	return "."
}

func tree(child, blockSize, count uint32) []byte {
	return append(append([]byte("tree"), be(1, child, blockSize, count)...), 0)
}

func emptyLeaf() []byte { return append(be16(1, 0), be(0, 0)...) }

// store accumulates blocks; block id 0 is the null block.
type store struct{ blocks [][]byte }

func (s *store) next() uint32 { return uint32(len(s.blocks) + 1) }

func (s *store) add(b []byte) uint32 {
	s.blocks = append(s.blocks, b)
	return uint32(len(s.blocks))
}

// bytes lays the file out: header, variables, blocks, block index and an
// empty free list (two null pointers, as Apple's tools leave).
func (s *store) bytes(vars []byte) []byte {
	var blocks bytes.Buffer
	ptrs := be(uint32(len(s.blocks)+1), 0, 0)
	at := uint32(headerSize + len(vars))
	for _, b := range s.blocks {
		ptrs = append(ptrs, be(at+uint32(blocks.Len()), uint32(len(b)))...)
		blocks.Write(b)
	}
	index := append(ptrs, be(0, 0, 0, 0, 0)...)
	indexOffset := at + uint32(blocks.Len())

	hdr := make([]byte, headerSize)
	copy(hdr, "BOMStore")
	copy(hdr[8:], be(1, uint32(len(s.blocks)), indexOffset, uint32(len(index)), headerSize, uint32(len(vars))))

	out := make([]byte, 0, int(indexOffset)+len(index))
	out = append(out, hdr...)
	out = append(out, vars...)
	out = append(out, blocks.Bytes()...)
	return append(out, index...)
}

func be(v ...uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.BigEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func be16(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.BigEndian.PutUint16(b[2*i:], x)
	}
	return b
}
