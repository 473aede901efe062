//go:build windows

package osquery

import (
	"fmt"
	"os"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/osquery/osquery-go/transport"
)

// open connects to osqueryd's extensions named pipe at path. osquery-go
// waits for the pipe by polling; checking first keeps an absent pipe cheap
// and the wait ours to bound. Who serves a pipe is a matter of its ACL,
// which osqueryd sets.
func open(path string, timeout time.Duration) (thrift.TTransport, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	return transport.Open(path, timeout)
}

// checkOsqueryd has no POSIX owner and mode to look at here.
func checkOsqueryd(path string) (string, error) { return path, nil }
