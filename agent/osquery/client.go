package osquery

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/osquery/osquery-go/gen/osquery"
)

// DefaultMaxResponse bounds how many bytes one answer from osqueryd may
// take (Options.MaxResponse). A posture query needs a row count; the
// agent's own listings (keychain certificates, local accounts) are tens of
// kilobytes. Without a bound, a query made to return millions of rows
// (a recursive CTE) took the agent past 700 MB. Decoded, the smallest rows
// cost about 25 times their bytes on the wire, so 4 MiB keeps the worst
// answer near 100 MB.
const DefaultMaxResponse = 4 << 20

// ErrResponseTooLarge is osqueryd's answer to one query running past
// Options.MaxResponse: the agent stops reading it, and the query is an
// ERROR.
var ErrResponseTooLarge = errors.New("osquery's answer is larger than the agent accepts")

// client is one Thrift connection to osqueryd's extension manager: the
// protocol osquery-go generates, over a transport that stops reading once
// an answer passes its bound.
type client struct {
	trans *boundedTransport
	em    *osquery.ExtensionManagerClient
}

func newClient(trans thrift.TTransport, maxResponse int64) *client {
	bt := &boundedTransport{TTransport: trans, max: maxResponse}
	// The protocol's own limit bounds any one string, list or map it is
	// told is coming, before it allocates for it.
	conf := &thrift.TConfiguration{MaxMessageSize: int32(min(maxResponse, 1<<30))}
	return &client{trans: bt, em: osquery.NewExtensionManagerClientFactory(bt, thrift.NewTBinaryProtocolFactoryConf(conf))}
}

// Close ends the connection; a call blocked in it returns.
func (c *client) Close() { c.trans.Close() }

// query runs sql. An answer past the bound is ErrResponseTooLarge, and the
// connection can no longer be used.
func (c *client) query(ctx context.Context, sql string) (*osquery.ExtensionResponse, error) {
	c.trans.reset()
	resp, err := c.em.Query(ctx, sql)
	if c.tooLarge(err) {
		return nil, fmt.Errorf("%w (more than %d bytes): the query returns too much to be a posture check", ErrResponseTooLarge, c.trans.max)
	}
	return resp, err
}

func (c *client) ping(ctx context.Context) (*osquery.ExtensionStatus, error) {
	c.trans.reset()
	st, err := c.em.Ping(ctx)
	if c.tooLarge(err) {
		return nil, fmt.Errorf("%w (more than %d bytes)", ErrResponseTooLarge, c.trans.max)
	}
	return st, err
}

// tooLarge reports whether err came from the bound: the transport's, or
// the protocol's when the answer announced more than it allows.
func (c *client) tooLarge(err error) bool {
	var pe thrift.TProtocolException
	return c.trans.over || errors.As(err, &pe) && pe.TypeId() == thrift.SIZE_LIMIT
}

// boundedTransport counts the bytes read since reset and refuses to read
// past max. Only the goroutine that holds the Runner's lock uses it.
type boundedTransport struct {
	thrift.TTransport
	max  int64
	read int64
	over bool
}

func (t *boundedTransport) reset() { t.read, t.over = 0, false }

func (t *boundedTransport) Read(p []byte) (int, error) {
	rest := t.max - t.read
	if rest <= 0 {
		t.over = true
		return 0, ErrResponseTooLarge
	}
	if int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := t.TTransport.Read(p)
	t.read += int64(n)
	return n, err
}
