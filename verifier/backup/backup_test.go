package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/datadir"
)

var t0 = time.Date(2025, time.March, 4, 5, 6, 7, 0, time.UTC)

// entry is one tar entry a test archive holds.
type entry struct {
	hdr  tar.Header
	data string
}

func file(name, data string) entry {
	return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data}
}

// whole is a minimal archive restore accepts.
func whole() []entry {
	var es []entry
	for _, n := range datadir.Required {
		es = append(es, file(n, "content of "+n))
	}
	return append(es, file(datadir.SQLiteFile, "db"))
}

func archive(t testing.TB, es []entry, compress bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw *gzip.Writer
	var w io.Writer = &buf
	if compress {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range es {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// target is an empty data dir inside a directory of its own, so a test
// can see that nothing was written beside it.
func target(t testing.TB) (parent, dir string) {
	return targetIn(t, t.TempDir())
}

func targetIn(t testing.TB, parent string) (string, string) {
	dir := filepath.Join(parent, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return parent, dir
}

// untouched fails unless parent holds only the empty dir.
func untouched(t testing.TB, parent, dir string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil || len(ents) != 1 || ents[0].Name() != filepath.Base(dir) {
		t.Fatalf("beside the data dir: %v %v", ents, err)
	}
	ents, err = os.ReadDir(dir)
	if err != nil || len(ents) != 0 {
		t.Fatalf("a failed restore left %v %v", ents, err)
	}
}

var lim = Limits{Database: 1 << 20}

func TestExtractRefuses(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("k", MaxFileSize+1)
	withEntry := func(e entry) []entry { return append(whole()[:2], append([]entry{e}, whole()[2:]...)...) }
	link := func(typ byte) entry {
		return entry{tar.Header{Typeflag: typ, Name: "ca.key", Linkname: "/etc/shadow"}, ""}
	}
	truncated := archive(t, whole(), false)
	truncated = truncated[:1024+100] // inside the second file
	gz := archive(t, whole(), true)
	corrupt := append([]byte(nil), gz...)
	corrupt[len(corrupt)-6] ^= 0xff // the gzip trailer's checksum
	var trailing bytes.Buffer       // a whole tar, then more in the same gzip stream
	zw := gzip.NewWriter(&trailing)
	zw.Write(archive(t, whole(), false))
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"long headers", longHeaders(t, 20), "holds more than a backup can"},
		{"trailing data", trailing.Bytes(), "holds more than a backup can"},
		{"absolute", archive(t, withEntry(file("/etc/cron.d/x", "x")), false), "is an absolute path"},
		{"traversal", archive(t, withEntry(file("../x", "x")), false), "leaves the directory"},
		{"traversal inside", archive(t, withEntry(file("a/../../ca.pem", "x")), false), "leaves the directory"},
		{"symlink", archive(t, withEntry(link(tar.TypeSymlink)), false), "is a link"},
		{"hard link", archive(t, withEntry(link(tar.TypeLink)), false), "is a link"},
		{"device", archive(t, withEntry(entry{tar.Header{Typeflag: tar.TypeChar, Name: "tls.key", Devmajor: 1, Devminor: 3}, ""}), false), "not a regular file"},
		{"fifo", archive(t, withEntry(entry{tar.Header{Typeflag: tar.TypeFifo, Name: "tls.key"}, ""}), false), "not a regular file"},
		{"directory", archive(t, withEntry(entry{tar.Header{Typeflag: tar.TypeDir, Name: "sub/"}, ""}), false), "not a regular file"},
		{"unknown name", archive(t, withEntry(file("authorized_keys", "x")), false), "not a file of a data dir"},
		{"in a subdirectory", archive(t, withEntry(file("sub/ca.pem", "x")), false), "not a file of a data dir"},
		{"live WAL", archive(t, withEntry(file("clearance.db-wal", "x")), false), "not a file of a data dir"},
		{"twice", archive(t, withEntry(file(datadir.Required[0], "again")), false), "appears twice"},
		{"oversize file", archive(t, withEntry(file("tls.pem", big)), false), "bytes; no file of a data dir"},
		{"oversize database", archive(t, append(whole()[:len(whole())-1], file(datadir.SQLiteFile, strings.Repeat("d", int(lim.Database)+1))), false), "more than the"},
		{"truncated tar", truncated, "truncated"},
		{"truncated gzip", gz[:len(gz)/2], "truncated"},
		{"corrupt gzip", corrupt, "damaged"},
		{"not an archive", []byte(strings.Repeat("not a tar ", 100)), "not a backup archive"},
		{"missing keys", archive(t, whole()[3:], false), "not a whole backup"},
		{"missing database", archive(t, whole()[:len(whole())-1], false), "has no clearance.db"},
		{"bad serve.json", archive(t, append(whole(), file(datadir.RecordFile, `{"database":"mysql://x"}`)), false), "serve.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parent, dir := target(t)
			_, err := Extract(context.Background(), bytes.NewReader(tc.data), dir, lim)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract = %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is more than one line: %q", err)
			}
			untouched(t, parent, dir)
		})
	}
}

// longHeaders is a gzipped tar of n entries with 1 MiB names: headers
// tar reads itself, n MiB of them in n KiB.
func longHeaders(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	name := strings.Repeat("n", 1<<20-1)
	for range n {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Format: tar.FormatGNU}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExtractBoundsInput: an archive of headers alone is refused after
// MaxOverhead bytes, not read to its end, however much room the database
// has; a tar padded to GNU tar's 10 KiB records, gzipped, is taken.
func TestExtractBoundsInput(t *testing.T) {
	t.Parallel()
	data := longHeaders(t, 20)
	_, dir := target(t)
	r := bytes.NewReader(data)
	_, err := Extract(context.Background(), r, dir, Limits{Database: 1 << 40})
	if err == nil || !strings.Contains(err.Error(), "holds more than a backup can") {
		t.Fatalf("Extract = %v", err)
	}
	if read := len(data) - r.Len(); read > len(data)/2 {
		t.Errorf("read %d of the %d bytes before refusing", read, len(data))
	}

	tarball := archive(t, whole(), false)
	var padded bytes.Buffer
	zw := gzip.NewWriter(&padded)
	zw.Write(tarball)
	zw.Write(make([]byte, 10240-len(tarball)%10240))
	zw.Close()
	_, dir = target(t)
	if _, err := Extract(context.Background(), &padded, dir, lim); err != nil {
		t.Fatalf("a tar padded to a record: %v", err)
	}
}

// TestExtractCancelled: a restore stopped while it reads removes what it
// wrote.
func TestExtractCancelled(t *testing.T) {
	t.Parallel()
	ctx := &cancelAfter{Context: context.Background()}
	ctx.n.Store(3) // a few reads in: some files written
	parent, dir := target(t)
	if _, err := Extract(ctx, bytes.NewReader(archive(t, whole(), true)), dir, lim); !errors.Is(err, context.Canceled) {
		t.Fatalf("Extract = %v, want context.Canceled", err)
	}
	untouched(t, parent, dir)
}

// cancelAfter is a context that ends after n calls of Err: a signal
// arriving in the middle of a restore, without a race.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestRoundTrip: what Write archives from a data dir, Extract restores
// with the verifier's modes, whatever the archive says, gzipped or not;
// the live database's files are left out and the snapshot taken instead.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		src := t.TempDir()
		for _, f := range datadir.Files {
			if err := os.WriteFile(filepath.Join(src, f.Name), []byte("live "+f.Name), f.Mode); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"clearance.db-wal", "clearance.db-shm", ".ca.key.123.tmp", "notes.txt"} {
			if err := os.WriteFile(filepath.Join(src, n), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(src, datadir.RecordFile), []byte(`{"database":"sqlite"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		snap := filepath.Join(t.TempDir(), "snap")
		if err := os.WriteFile(snap, []byte("snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w, err := Write(&buf, src, snap, compress, t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Files) != len(datadir.Files) || strings.Join(w.Skipped, " ") != "notes.txt" {
			t.Errorf("archived %v, skipped %v", w.Files, w.Skipped)
		}
		_, dir := target(t)
		res, err := Extract(context.Background(), &buf, dir, lim)
		if err != nil {
			t.Fatal(err)
		}
		if res.Database != datadir.SQLite || len(res.Files) != len(datadir.Files) {
			t.Errorf("restored %+v", res)
		}
		for _, f := range datadir.Files {
			st, err := os.Lstat(filepath.Join(dir, f.Name))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != f.Mode {
				t.Errorf("%s restored with mode %04o, want %04o", f.Name, st.Mode().Perm(), f.Mode)
			}
			got, _ := os.ReadFile(filepath.Join(dir, f.Name))
			want := "live " + f.Name
			switch f.Name {
			case datadir.SQLiteFile:
				want = "snapshot"
			case datadir.RecordFile:
				want = `{"database":"sqlite"}`
			}
			if string(got) != want {
				t.Errorf("%s = %q, want %q", f.Name, got, want)
			}
		}
	}
}

// TestWriteRefusesLinks: a key that is a link is not followed into the
// archive, as the verifier does not follow it.
func TestWriteRefusesLinks(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	other := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca.key", "ca.pem"} {
		dir := filepath.Join(src, name+".d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(other, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if _, err := Write(&bytes.Buffer{}, dir, "", false, t0); err == nil || !strings.Contains(err.Error(), "link") && !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("%s as a link: %v", name, err)
		}
	}
}

// TestPostgresArchive: a data dir whose serve.json names PostgreSQL is
// whole without the database, and must not carry one.
func TestPostgresArchive(t *testing.T) {
	t.Parallel()
	pg := file(datadir.RecordFile, `{"database":"postgres://clearance@db.internal/clearance"}`)
	_, dir := target(t)
	res, err := Extract(context.Background(), bytes.NewReader(archive(t, append(whole()[:len(whole())-1], pg), false)), dir, lim)
	if err != nil || !strings.HasPrefix(res.Database, "postgres://") {
		t.Fatalf("Extract = %+v, %v", res, err)
	}
	parent, dir := target(t)
	if _, err := Extract(context.Background(), bytes.NewReader(archive(t, append(whole(), pg), false)), dir, lim); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("a PostgreSQL archive with a database: %v", err)
	}
	untouched(t, parent, dir)
}

// FuzzRestore: whatever the archive's bytes, Extract does not panic,
// writes nothing outside the target, only the data dir's files in it, and
// nothing at all when it fails.
func FuzzRestore(f *testing.F) {
	f.Add(archive(f, whole(), false))
	f.Add(archive(f, whole(), true))
	f.Add(archive(f, append(whole(), file("../x", "x")), false))
	f.Add(archive(f, append(whole(), entry{tar.Header{Typeflag: tar.TypeSymlink, Name: "ca.key", Linkname: "/x"}, ""}), true))
	f.Add(longHeaders(f, 20))
	// Extract fsyncs what it writes; in memory (/dev/shm) that costs
	// nothing, and the fuzzer is not held up by the disk.
	base := os.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		base = "/dev/shm"
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tmp, err := os.MkdirTemp(base, "fuzzrestore")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		parent, dir := targetIn(t, tmp)
		res, err := Extract(context.Background(), bytes.NewReader(data), dir, Limits{Database: 1 << 16})
		if err != nil {
			untouched(t, parent, dir)
			return
		}
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("beside the data dir: %v", ents)
		}
		ents, _ = os.ReadDir(dir)
		if len(ents) != len(res.Files) {
			t.Fatalf("restored %v, the dir holds %v", res.Files, ents)
		}
		for _, e := range ents {
			f, ok := datadir.Lookup(e.Name())
			st, _ := os.Lstat(filepath.Join(dir, e.Name()))
			if !ok || !st.Mode().IsRegular() || st.Mode().Perm() != f.Mode {
				t.Fatalf("restored %s (%v)", e.Name(), st.Mode())
			}
		}
	})
}
