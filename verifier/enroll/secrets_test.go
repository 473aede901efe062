package enroll

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// lookups is a SecretStore that counts lookups and finds nothing.
type lookups struct {
	storage.SecretStore
	n int
}

func (l *lookups) GetEnrollSecret(context.Context, string) (storage.EnrollSecret, error) {
	l.n++
	return storage.EnrollSecret{}, storage.ErrNotFound
}

// TestCheckSecretRefusesBeforeLookup: what cannot be a secret (an id that is
// not hex, NUL bytes, too long) is invalid without a lookup, so no database
// ever sees bytes it would refuse as an error.
func TestCheckSecretRefusesBeforeLookup(t *testing.T) {
	t.Parallel()
	store := &lookups{}
	for _, s := range []string{"", "x", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00.x",
		"0123456789ABCDEF.x", "0123456789abcdef" + string(make([]byte, 200))} {
		if _, err := CheckSecret(context.Background(), store, s, time.Now()); !errors.Is(err, ErrSecretInvalid) {
			t.Errorf("CheckSecret(%q) = %v, want ErrSecretInvalid", s, err)
		}
	}
	if store.n != 0 {
		t.Errorf("%d lookups, want none", store.n)
	}
	if _, err := CheckSecret(context.Background(), store, "0123456789abcdef.value", time.Now()); !errors.Is(err, ErrSecretInvalid) || store.n != 1 {
		t.Errorf("a well-formed unknown secret: %v after %d lookups", err, store.n)
	}
}
