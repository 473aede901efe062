package admin

import "github.com/clearance/clearance/verifier/secretfile"

// TokenFile is the admin token's file name in the data dir.
const TokenFile = "admin.token"

// LoadOrCreateToken reads the admin token from path, creating a random one
// (0600) if the file does not exist. A token file that is a symbolic link, is
// not ours, or is readable by group or others is refused: it grants full
// control of the verifier, and an admin's command sends it to the server.
func LoadOrCreateToken(path string) (string, error) {
	return secretfile.LoadOrCreateToken(path, "admin token")
}
