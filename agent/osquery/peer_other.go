//go:build !linux && !darwin && !windows

package osquery

// peerCred has no kernel answer to ask here (Linux has SO_PEERCRED, macOS
// LOCAL_PEERCRED): the agent relies on checkSocket's look at the socket's
// owner and its directory. See docs/agent.md.
func peerCred(int) (uid, pid int, err error) { return 0, 0, errNoPeerCred }
