//go:build !windows

package osquery

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
)

// open connects to the extensions socket at path.
func open(path string, timeout time.Duration) (thrift.TTransport, error) {
	if _, err := os.Lstat(path); err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	return thrift.NewTSocketFromConnConf(conn, &thrift.TConfiguration{ConnectTimeout: timeout, SocketTimeout: timeout}), nil
}
