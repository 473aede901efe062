package signin

import "testing"

// TestBeside: wait returns once fn has, with what fn set; a panic in fn is
// raised by wait on the caller's goroutine (where net/http recovers it),
// once.
func TestBeside(t *testing.T) {
	t.Parallel()
	var got int
	wait := beside(func() { got = 42 })
	wait()
	if got != 42 {
		t.Fatalf("got %d after wait, want 42", got)
	}
	wait() // a second wait returns at once

	wait = beside(func() { panic("signing blew up") })
	func() {
		defer func() {
			if p := recover(); p != "signing blew up" {
				t.Errorf("wait raised %v, want fn's panic", p)
			}
		}()
		wait()
		t.Error("wait returned after fn panicked")
	}()
	wait() // raised once only
}
