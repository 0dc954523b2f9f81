package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// qmpError is an error QEMU returned for a command.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// qmpEvent is an asynchronous QMP event, such as SHUTDOWN or
// GUEST_PANICKED.
type qmpEvent struct {
	Name string
	Data json.RawMessage
	Time time.Time
}

// qmpMessage is any message QEMU sends: the greeting, a command's return or
// error, or an event.
type qmpMessage struct {
	QMP       json.RawMessage `json:"QMP"`
	Return    json.RawMessage `json:"return"`
	Error     *qmpError       `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	ID        json.RawMessage `json:"id"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

type qmpCommand struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        uint64 `json:"id"`
}

// errQMPUnreachable means nothing accepted a connection on the QMP socket:
// QEMU has not created it yet, or is gone.
var errQMPUnreachable = errors.New("qmp socket unreachable")

// errQMPClosed means the QMP connection is gone, usually because QEMU
// exited.
var errQMPClosed = errors.New("qmp connection closed")

// qmpEventBuffer is how many events wait for a reader before new ones are
// dropped. Events are for logging; a slow reader must not stall commands.
const qmpEventBuffer = 64

// qmpClient speaks QMP, the QEMU Machine Protocol: JSON objects, one per
// line, over a unix socket. One command is in flight at a time; events
// arrive on Events.
type qmpClient struct {
	conn      net.Conn
	cmdMu     sync.Mutex // one command in flight
	nextID    uint64     // guarded by cmdMu
	replies   chan qmpMessage
	events    chan qmpEvent
	closed    chan struct{}
	err       error // why the reader stopped; set before closed is closed
	closeOnce sync.Once
}

// dialQMP connects to the QMP socket at path and negotiates capabilities.
func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to qmp: %w: %w", errQMPUnreachable, err)
	}
	c, err := newQMPClient(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// newQMPClient runs the QMP handshake on conn: it reads the greeting and
// leaves capabilities negotiation mode.
func newQMPClient(ctx context.Context, conn net.Conn) (*qmpClient, error) {
	// The handshake is synchronous, so the context's deadline is the
	// connection's until it is done.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r := bufio.NewReaderSize(conn, 64<<10)
	dec := json.NewDecoder(r)
	var greeting qmpMessage
	if err := dec.Decode(&greeting); err != nil {
		return nil, fmt.Errorf("reading qmp greeting: %w", ctxErr(ctx, err))
	}
	if greeting.QMP == nil {
		return nil, errors.New("reading qmp greeting: not a QMP server")
	}
	if err := json.NewEncoder(conn).Encode(qmpCommand{Execute: "qmp_capabilities"}); err != nil {
		return nil, fmt.Errorf("negotiating qmp capabilities: %w", ctxErr(ctx, err))
	}
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("negotiating qmp capabilities: %w", ctxErr(ctx, err))
		}
		if m.Event != "" {
			continue // events may come before the reply; they are not wanted yet
		}
		if m.Error != nil {
			return nil, fmt.Errorf("negotiating qmp capabilities: %w", m.Error)
		}
		break
	}
	if !stop() {
		return nil, fmt.Errorf("negotiating qmp capabilities: %w", ctx.Err())
	}
	conn.SetDeadline(time.Time{})

	c := &qmpClient{
		conn:    conn,
		nextID:  1,
		replies: make(chan qmpMessage, 1),
		events:  make(chan qmpEvent, qmpEventBuffer),
		closed:  make(chan struct{}),
	}
	go c.read(dec)
	return c, nil
}

// ctxErr reports a connection error that ctx caused as ctx's error. The
// connection's deadline is ctx's, and may fire a moment before ctx notices.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

func (c *qmpClient) read(dec *json.Decoder) {
	defer close(c.events)
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			c.err = err
			close(c.closed)
			return
		}
		if m.Event != "" {
			ev := qmpEvent{Name: m.Event, Data: m.Data}
			if m.Timestamp != nil {
				ev.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
			}
			select {
			case c.events <- ev:
			default: // nobody is reading: drop rather than stall replies
			}
			continue
		}
		// A reply to a command whose caller gave up is dropped by execute,
		// which matches ids; this send never blocks for long because only
		// one command is in flight.
		select {
		case c.replies <- m:
		case <-time.After(time.Second):
		}
	}
}

// Events delivers QMP events until the connection closes. Events are dropped
// while nobody reads.
func (c *qmpClient) Events() <-chan qmpEvent { return c.events }

// Closed is closed when the connection is gone.
func (c *qmpClient) Closed() <-chan struct{} { return c.closed }

// execute runs a QMP command and decodes its return value into out, unless
// out is nil.
func (c *qmpClient) execute(ctx context.Context, command string, args any, out any) error {
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	id := c.nextID
	c.nextID++

	b, err := json.Marshal(qmpCommand{Execute: command, Arguments: args, ID: id})
	if err != nil {
		return fmt.Errorf("qmp %s: encoding: %w", command, err)
	}
	b = append(b, '\n')
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
		defer c.conn.SetWriteDeadline(time.Time{})
	}
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	want := strconv.FormatUint(id, 10)
	for {
		select {
		case m := <-c.replies:
			if string(m.ID) == want {
				return decodeReply(command, m, out)
			}
			// else the late reply of an abandoned command
		case <-c.closed:
			// The reader queues a reply before it notices the close, as
			// when QEMU answers quit and exits: take the reply if it came.
			select {
			case m := <-c.replies:
				if string(m.ID) == want {
					return decodeReply(command, m, out)
				}
			default:
			}
			return fmt.Errorf("qmp %s: %w", command, errQMPClosed)
		case <-ctx.Done():
			return fmt.Errorf("qmp %s: %w", command, ctx.Err())
		}
	}
}

func decodeReply(command string, m qmpMessage, out any) error {
	if m.Error != nil {
		return fmt.Errorf("qmp %s: %w", command, m.Error)
	}
	if out != nil {
		if err := json.Unmarshal(m.Return, out); err != nil {
			return fmt.Errorf("qmp %s: decoding reply: %w", command, err)
		}
	}
	return nil
}

// Close closes the connection; QEMU keeps running. Closing twice is a
// no-op.
func (c *qmpClient) Close() error {
	var err error
	c.closeOnce.Do(func() { err = c.conn.Close() })
	<-c.closed
	return err
}
