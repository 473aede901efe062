//go:build !linux && !darwin && !windows

package osquery

import "net"

// checkPeer has no kernel answer to ask here (Linux has SO_PEERCRED,
// macOS LOCAL_PEERCRED): the agent relies on checkSocket's look at the
// socket's owner and its directory. See docs/agent.md.
func checkPeer(string, net.Conn) error { return nil }
