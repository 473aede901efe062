package postgres

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testSealer(t testing.TB, key string, now *time.Time) *sealer {
	t.Helper()
	sl, err := newSealer([]byte(key), func() time.Time { return *now })
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

// A sealed signal opens under its key once, within the window of the
// receiver's clock; anything else on the channel is refused: plain JSON
// (what any role may NOTIFY), another deployment's key, a changed byte, a
// replay, a signal dated too far either way, malformed or oversized input.
func TestSealedSignals(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a := testSealer(t, "the replicas' shared key, 32 by", &now)
	b := testSealer(t, "the replicas' shared key, 32 by", &now)
	other := testSealer(t, "another deployment's key 32 byte", &now)
	want := signal{From: "a", Kind: "enrolled", DeviceID: "dev-1", KeyHash: []byte{1, 2, 3}}
	sealed, err := a.seal(want)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "dev-1") || strings.Contains(sealed, "enrolled") {
		t.Errorf("a sealed signal shows its contents: %s", sealed)
	}
	got, err := b.open(sealed)
	if err != nil || got.DeviceID != want.DeviceID || got.Kind != want.Kind || string(got.KeyHash) != string(want.KeyHash) || got.From != "a" {
		t.Fatalf("open: %+v %v", got, err)
	}
	if _, err := b.open(sealed); !errors.Is(err, errSignalRefused) || !strings.Contains(err.Error(), "sent again") {
		t.Errorf("the same signal again: %v, want refused as sent again", err)
	}

	plain, _ := json.Marshal(signal{From: "x", Kind: "enrolled", DeviceID: "dev-1", KeyHash: []byte("AAAA")})
	flip := []byte(sealed)
	flip[len(flip)-3] ^= 1
	fromOther, _ := other.seal(want)
	refused := map[string]string{
		"plain JSON":              string(plain),
		"another deployment's":    fromOther,
		"a changed byte":          string(flip),
		"empty":                   "",
		"prefix only":             sealPrefix,
		"not base64":              sealPrefix + "!!!!",
		"shorter than a nonce":    sealPrefix + base64.RawStdEncoding.EncodeToString([]byte("short")),
		"oversized":               sealPrefix + strings.Repeat("A", 8000),
		"an older format's label": "s0:" + strings.TrimPrefix(sealed, sealPrefix),
	}
	for name, p := range refused {
		if s, err := b.open(p); !errors.Is(err, errSignalRefused) {
			t.Errorf("%s: opened %+v, %v; want refused", name, s, err)
		} else if strings.Contains(err.Error(), "dev-1") {
			t.Errorf("%s: the refusal echoes the payload: %v", name, err)
		}
	}

	// Dated beyond the window, either way, by the receiver's clock.
	for _, d := range []time.Duration{signalWindow + time.Second, -signalWindow - time.Second} {
		at := now.Add(d)
		sender := testSealer(t, "the replicas' shared key, 32 by", &at)
		s, _ := sender.seal(want)
		if _, err := b.open(s); !errors.Is(err, errSignalRefused) || !strings.Contains(err.Error(), "dated") {
			t.Errorf("a signal dated %v from now: %v, want refused", d, err)
		}
	}
	// Within it, either way, taken.
	for _, d := range []time.Duration{signalWindow - time.Second, -signalWindow + time.Second} {
		at := now.Add(d)
		sender := testSealer(t, "the replicas' shared key, 32 by", &at)
		s, _ := sender.seal(want)
		if _, err := b.open(s); err != nil {
			t.Errorf("a signal dated %v from now: %v, want taken", d, err)
		}
	}

	// A replay after its id is forgotten is out of its window anyway.
	sealed2, _ := a.seal(want)
	if _, err := b.open(sealed2); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2*signalWindow + time.Second)
	if _, err := b.open(sealed2); !errors.Is(err, errSignalRefused) {
		t.Errorf("a replay once its id is forgotten: %v, want refused", err)
	}
	// The next signal taken forgets the ids whose time has passed.
	fresh, _ := a.seal(want)
	if _, err := b.open(fresh); err != nil {
		t.Fatal(err)
	}
	if len(b.seen) != 1 || len(b.order) != 1 {
		t.Errorf("%d ids remembered after their time, want only the new one", len(b.seen))
	}

	if _, err := newSealer([]byte("short"), nil); err == nil {
		t.Error("a key of 5 bytes accepted")
	}
}

// The ids remembered are bounded: past maxSeen the oldest is forgotten.
func TestSealedSignalsSeenBounded(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a := testSealer(t, "the replicas' shared key, 32 by", &now)
	b := testSealer(t, "the replicas' shared key, 32 by", &now)
	var first string
	for i := range maxSeen + 10 {
		s, err := a.seal(signal{From: "a", Kind: "check", DeviceID: "dev-1"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = s
		}
		if _, err := b.open(s); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.seen) != maxSeen || len(b.order) != maxSeen {
		t.Errorf("%d ids (%d in order) remembered, want %d", len(b.seen), len(b.order), maxSeen)
	}
	// The bound's documented cost: the oldest, forgotten early, is taken
	// again within its window.
	if _, err := b.open(first); err != nil {
		t.Errorf("the oldest id, forgotten at the bound: %v", err)
	}
}

// FuzzOpen: whatever is sent on the channel, open refuses it without a
// panic, and takes nothing not sealed under the key.
func FuzzOpen(f *testing.F) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a := testSealer(f, "the replicas' shared key, 32 by", &now)
	s, _ := a.seal(signal{From: "a", Kind: "check", DeviceID: "dev-1", Nonce: []byte{1}})
	plain, _ := json.Marshal(signal{From: "x", Kind: "enrolled", DeviceID: "dev-1"})
	for _, seed := range []string{s, string(plain), "", sealPrefix, sealPrefix + "AAAA", "s1:" + strings.Repeat("/", 100)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		b := testSealer(t, "another key that is 32 bytes ok", &now)
		if got, err := b.open(payload); err == nil {
			t.Fatalf("a payload not sealed under the key opened: %+v", got)
		}
	})
}
