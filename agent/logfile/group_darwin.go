package logfile

// logGroup is macOS's admin group (gid 80 on every Mac): administrators
// read the agent's log without sudo, other users do not.
const logGroup = 80
