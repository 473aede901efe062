//go:build !linux && !darwin

package presence

// BrowserCheckDefault says whether the agent checks the browser unless told
// otherwise; there is no check on this platform.
const BrowserCheckDefault = false

func newBrowserCheck(Browsers) (PeerCheck, error) { return nil, ErrUnsupported }
