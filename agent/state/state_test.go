package state

import (
	"os"
	"strings"
	"testing"
)

func TestSeqPersistsAndNeverRepeats(t *testing.T) {
	t.Parallel()
	path := t.TempDir()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		got, err := d.NextSeq()
		if err != nil || got != want {
			t.Fatalf("NextSeq = %d, %v; want %d", got, err, want)
		}
	}
	// A new process continues from the file.
	d2, _ := Open(path)
	if got, _ := d2.NextSeq(); got != 4 {
		t.Errorf("after reopen NextSeq = %d, want 4", got)
	}
	if got, _ := d2.RaiseSeq(1000); got != 1001 {
		t.Errorf("RaiseSeq(1000) = %d, want 1001", got)
	}
	if got, _ := d2.RaiseSeq(10); got != 1002 {
		t.Errorf("RaiseSeq below the current seq = %d, want 1002", got)
	}
	fi, err := os.Stat(d.File(SeqFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("seq file mode %04o", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(path)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestCorruptSeqRefused(t *testing.T) {
	t.Parallel()
	d, _ := Open(t.TempDir())
	if err := os.WriteFile(d.File(SeqFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.NextSeq(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("err = %v, want a refusal: restarting at 1 would repeat seqs", err)
	}
}

func TestNotEnrolled(t *testing.T) {
	t.Parallel()
	d, _ := Open(t.TempDir())
	if _, err := d.LoadIdentity(); err != ErrNotEnrolled {
		t.Errorf("err = %v, want ErrNotEnrolled", err)
	}
}
