// Package osquerysim is an osqueryd stand-in for tests and demos. It serves
// osquery's real Thrift extension-manager API (the one osquery-go's client
// speaks) on a unix socket, and answers SQL from an in-memory SQLite
// database whose tables carry osquery's macOS names, columns, types and
// collations, filled from a Fixture that can be swapped while it runs.
// CertificateRow renders a real certificate the way osqueryd's certificates
// table does, for fixtures built in code.
//
// What it mirrors from osqueryd: the wire format (unframed binary Thrift),
// status codes and messages (a failed query is code 1 with SQLite's error
// text), every value returned as a string with NULL as "", rows from every
// statement of a multi-statement query, writes refused with "table X may
// not be modified", the VERSION collation and version_compare().
//
// Where it differs, on purpose: no scratch tables or views (each query sees
// exactly the fixture), getQueryColumns reports UNKNOWN for expressions,
// extension registration is recorded but extension tables are not routed,
// and a query is interrupted after a timeout.
package osquerysim
