//go:build unix && !darwin

package logfile

// logGroup -1 leaves the log's group as it is.
const logGroup = -1
