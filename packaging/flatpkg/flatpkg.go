// Package flatpkg builds macOS flat product packages (.pkg) holding one
// component package, without Apple's pkgbuild and productbuild.
//
// The product is a xar archive with a Distribution script at its top and a
// "<name>.pkg" directory holding the component: PackageInfo, Bom, Payload
// (gzip-compressed odc cpio of the files) and Scripts (the same, holding the
// preinstall/postinstall scripts).
//
// Every timestamp is the given ModTime and every list is written in a fixed
// order, so the same Product gives the same bytes.
package flatpkg

import (
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/clearance/clearance/packaging/bom"
	"github.com/clearance/clearance/packaging/cpio"
	"github.com/clearance/clearance/packaging/xar"
)

// File is a regular file of the payload.
type File struct {
	// Path below the install location, e.g. "usr/local/bin/tool".
	Path     string
	Mode     fs.FileMode // permission bits
	UID, GID int
	Data     []byte
}

// Script is an installer script: "preinstall" or "postinstall".
type Script struct {
	Name string
	Data []byte
}

// Product describes the package to build.
type Product struct {
	Title             string   // shown by Installer
	Identifier        string   // package identifier, e.g. "com.example.agent"
	Version           string   // package version
	MinOSVersion      string   // lowest macOS version, e.g. "12.0"
	HostArchitectures []string // e.g. {"x86_64", "arm64"}
	// ComponentName names the component inside the product,
	// "<ComponentName>.pkg".
	ComponentName string
	Files         []File
	Scripts       []Script
	// ModTime is every timestamp in the package (e.g. SOURCE_DATE_EPOCH).
	ModTime time.Time
	// Signer, when set, signs the product (a Developer ID Installer
	// identity for distribution outside an MDM).
	Signer *xar.Signer
}

// Directories created for the payload's parents, and the owner of package
// metadata: root:wheel, 0755, as the system's own directories are.
const (
	dirMode = fs.ModeDir | 0o755
	rootUID = 0
	wheel   = 0
)

var scriptNames = map[string]bool{"preinstall": true, "postinstall": true}

// Build returns the product package.
func Build(p Product) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	// 1. The payload's entries, directories included, sorted by path so
	//    that parents precede children.
	entries, err := payloadEntries(p.Files)
	if err != nil {
		return nil, err
	}

	// 2. Payload, Bom, Scripts.
	payload, err := gzipCpio(entries, p.ModTime)
	if err != nil {
		return nil, fmt.Errorf("building payload: %w", err)
	}
	var bomEntries []bom.Entry
	var installBytes int64
	for _, e := range entries {
		be := bom.Entry{Path: e.path, Mode: e.mode, UID: uint32(e.uid), GID: uint32(e.gid), ModTime: p.ModTime}
		if !e.mode.IsDir() {
			be.Size = int64(len(e.data))
			be.Checksum = bom.Checksum(e.data)
			installBytes += int64(len(e.data))
		}
		bomEntries = append(bomEntries, be)
	}
	bomData, err := bom.Build(bomEntries)
	if err != nil {
		return nil, fmt.Errorf("building bom: %w", err)
	}
	var scripts []byte
	if len(p.Scripts) > 0 {
		se := []payloadEntry{{path: ".", mode: dirMode}}
		for _, s := range p.Scripts {
			se = append(se, payloadEntry{path: "./" + s.Name, mode: 0o755, data: s.Data})
		}
		sort.Slice(se, func(i, j int) bool { return se[i].path < se[j].path })
		if scripts, err = gzipCpio(se, p.ModTime); err != nil {
			return nil, fmt.Errorf("building scripts: %w", err)
		}
	}
	installKB := (installBytes + 1023) / 1024

	// 3. The XML documents Installer reads.
	pkgInfo := packageInfo(p, len(entries), installKB)
	dist := distribution(p, installKB)

	// 4. The product archive.
	w := xar.NewWriter(p.ModTime)
	if p.Signer != nil {
		if err := w.Sign(p.Signer); err != nil {
			return nil, err
		}
	}
	comp := p.ComponentName + ".pkg"
	meta := func(name string, data []byte, enc xar.Encoding) xar.File {
		return xar.File{Name: name, Mode: 0o644, User: "root", Group: "wheel", ModTime: p.ModTime, Data: data, Encoding: enc}
	}
	files := []xar.File{
		meta("Distribution", dist, xar.Zlib),
		{Name: comp, Mode: dirMode, User: "root", Group: "wheel", ModTime: p.ModTime},
		meta(comp+"/Bom", bomData, xar.Zlib),
		// Payload and Scripts are gzip already; compressing again gains nothing.
		meta(comp+"/Payload", payload, xar.Stored),
	}
	if scripts != nil {
		files = append(files, meta(comp+"/Scripts", scripts, xar.Stored))
	}
	files = append(files, meta(comp+"/PackageInfo", pkgInfo, xar.Zlib))
	for _, f := range files {
		if err := w.Add(f); err != nil {
			return nil, err
		}
	}
	return w.Bytes()
}

func (p Product) validate() error {
	var missing []string
	for name, v := range map[string]string{
		"Title": p.Title, "Identifier": p.Identifier, "Version": p.Version,
		"MinOSVersion": p.MinOSVersion, "ComponentName": p.ComponentName,
	} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("flatpkg: missing %s", strings.Join(missing, ", "))
	}
	if strings.ContainsAny(p.ComponentName, "/#") {
		return fmt.Errorf("flatpkg: component name %q must not contain / or #", p.ComponentName)
	}
	if len(p.Files) == 0 {
		return errors.New("flatpkg: no files")
	}
	seen := map[string]bool{}
	for _, s := range p.Scripts {
		if !scriptNames[s.Name] {
			return fmt.Errorf("flatpkg: unsupported script %q (want preinstall or postinstall)", s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("flatpkg: script %q given twice", s.Name)
		}
		seen[s.Name] = true
		if !bytes.HasPrefix(s.Data, []byte("#!")) {
			return fmt.Errorf("flatpkg: script %s has no #! line; Installer executes it directly", s.Name)
		}
	}
	return nil
}

type payloadEntry struct {
	path     string // "." or "./a/b"
	mode     fs.FileMode
	uid, gid int
	data     []byte
}

func payloadEntries(files []File) ([]payloadEntry, error) {
	byPath := map[string]payloadEntry{".": {path: ".", mode: dirMode, uid: rootUID, gid: wheel}}
	for _, f := range files {
		rel := strings.TrimPrefix(f.Path, "/")
		if rel == "" || path.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("flatpkg: invalid path %q", f.Path)
		}
		if f.Mode.Type() != 0 {
			return nil, fmt.Errorf("flatpkg: %s: only regular files are supported", f.Path)
		}
		p := "./" + rel
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("flatpkg: %s given twice or also a directory", f.Path)
		}
		byPath[p] = payloadEntry{path: p, mode: f.Mode.Perm(), uid: f.UID, gid: f.GID, data: f.Data}
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			dp := "./" + d
			if e, ok := byPath[dp]; ok {
				if !e.mode.IsDir() {
					return nil, fmt.Errorf("flatpkg: %s is both a file and a directory", d)
				}
				continue
			}
			byPath[dp] = payloadEntry{path: dp, mode: dirMode, uid: rootUID, gid: wheel}
		}
	}
	out := make([]payloadEntry, 0, len(byPath))
	for _, e := range byPath {
		out = append(out, e)
	}
	// Sorting compares path components, so "./a/b" (in a) precedes "./a-b".
	sort.Slice(out, func(i, j int) bool {
		return lessPath(out[i].path, out[j].path)
	})
	return out, nil
}

func lessPath(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

// gzipCpio archives entries as odc cpio and gzips it. The gzip header
// carries no name and no time, so it adds nothing machine-specific.
func gzipCpio(entries []payloadEntry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	cw := cpio.NewWriter(zw)
	for _, e := range entries {
		h := &cpio.Header{Name: e.path, Mode: e.mode, UID: e.uid, GID: e.gid, ModTime: mtime, Size: int64(len(e.data))}
		if err := cw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := cw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func attr(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// packageInfo is the component's PackageInfo: installed at "/" by root,
// with the script names Installer runs.
func packageInfo(p Product, nFiles int, installKB int64) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, "<pkg-info format-version=\"2\" identifier=\"%s\" version=\"%s\" install-location=\"/\" auth=\"root\" overwrite-permissions=\"true\" relocatable=\"false\">\n",
		attr(p.Identifier), attr(p.Version))
	fmt.Fprintf(&b, "    <payload numberOfFiles=\"%d\" installKBytes=\"%d\"/>\n", nFiles, installKB)
	if len(p.Scripts) > 0 {
		b.WriteString("    <scripts>\n")
		for _, name := range []string{"preinstall", "postinstall"} {
			for _, s := range p.Scripts {
				if s.Name == name {
					fmt.Fprintf(&b, "        <%s file=\"./%s\"/>\n", name, name)
				}
			}
		}
		b.WriteString("    </scripts>\n")
	}
	b.WriteString("    <bundle-version/>\n    <upgrade-bundle/>\n    <update-bundle/>\n    <atomic-update-bundle/>\n    <strict-identifier/>\n    <relocate/>\n</pkg-info>\n")
	return b.Bytes()
}

// distribution is the product's Distribution script: one hidden choice
// installing the component, limited to the given architectures and macOS
// versions, and to the startup disk.
func distribution(p Product, installKB int64) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<installer-gui-script minSpecVersion=\"2\">\n")
	fmt.Fprintf(&b, "    <title>%s</title>\n", attr(p.Title))
	fmt.Fprintf(&b, "    <options customize=\"never\" require-scripts=\"false\" hostArchitectures=\"%s\"/>\n", attr(strings.Join(p.HostArchitectures, ",")))
	b.WriteString("    <domains enable_anywhere=\"false\" enable_currentUserHome=\"false\" enable_localSystem=\"true\"/>\n")
	fmt.Fprintf(&b, "    <volume-check>\n        <allowed-os-versions>\n            <os-version min=\"%s\"/>\n        </allowed-os-versions>\n    </volume-check>\n", attr(p.MinOSVersion))
	id := attr(p.Identifier)
	fmt.Fprintf(&b, "    <choices-outline>\n        <line choice=\"default\">\n            <line choice=\"%s\"/>\n        </line>\n    </choices-outline>\n", id)
	b.WriteString("    <choice id=\"default\"/>\n")
	fmt.Fprintf(&b, "    <choice id=\"%s\" visible=\"false\">\n        <pkg-ref id=\"%s\"/>\n    </choice>\n", id, id)
	fmt.Fprintf(&b, "    <pkg-ref id=\"%s\" version=\"%s\" onConclusion=\"none\" installKBytes=\"%d\">#%s.pkg</pkg-ref>\n",
		id, attr(p.Version), installKB, attr(p.ComponentName))
	b.WriteString("</installer-gui-script>\n")
	return b.Bytes()
}
