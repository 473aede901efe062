package presence

// BrowserCheckDefault says whether the agent checks the browser unless told
// otherwise. On macOS it does, with the default vendor lists.
const BrowserCheckDefault = true

// newBrowserCheck finds the peer with lsof (there is no cgo-free way to
// map a socket to its process short of parsing the kernel's private
// pcblist structures) and checks its code signature with codesign.
func newBrowserCheck(b Browsers) (PeerCheck, error) { return newSigningCheck(b, execRunner) }
