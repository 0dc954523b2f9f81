package kmod

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// scheduler loads the modules of a plan, each at most once, as many at
// a time as it has slots, each once the modules it follows have been
// tried. When more modules are ready than there are slots, the one that
// heads the costliest chain of modules still to load goes first (cost is
// the file size, which is what loading a module mostly scales with): ext4
// and its dependencies before small leaf modules.
//
// Modules begun in the background wait while foreground ones are ready,
// and take at most bgParallel slots, so that a CPU stays free for the
// agent: loading runs in the kernel, where a busy vCPU is not preempted
// for a lower-priority thread.
//
// A failed module does not hold back the ones after it: they are tried
// anyway, since a soft dependency (crc32c-intel on a CPU without SSE4.2)
// may fail without harm, and the kernel refuses a module whose symbols
// are really missing.
type scheduler struct {
	plan       *plan
	load       func(ctx context.Context, m module, background bool) error
	parallel   int
	bgParallel int
	rank       []int64 // cost of the module plus its costliest chain of followers
	next       [][]int // modules that follow each one
	done       []chan struct{}
	errs       []error // set before done is closed

	mu         sync.Mutex
	ctxs       []context.Context // of the start call that began each module
	background []bool            // began by a background start
	started    []bool
	finished   []bool
	waiting    []int         // unfinished modules a started one follows
	ready      [2]readyQueue // foreground, background
	running    int
	bgRunning  int
}

// newScheduler returns a scheduler that runs load for each module, at most
// parallel at a time and bgParallel of them background ones, on a
// goroutine of its own that ends after load returns (so load may lock it
// to its thread and change the thread's priority). load reports only
// failures that matter: a module that is built in or loaded already is a
// success.
func newScheduler(p *plan, parallel, bgParallel int, load func(ctx context.Context, m module, background bool) error) *scheduler {
	parallel = max(parallel, 1)
	bgParallel = min(max(bgParallel, 1), parallel)
	n := len(p.mods)
	s := &scheduler{
		plan: p, load: load, parallel: parallel, bgParallel: bgParallel,
		rank: make([]int64, n), next: make([][]int, n), done: make([]chan struct{}, n), errs: make([]error, n),
		ctxs: make([]context.Context, n), background: make([]bool, n), started: make([]bool, n), finished: make([]bool, n), waiting: make([]int, n),
	}
	for i, m := range p.mods {
		s.done[i] = make(chan struct{})
		for _, d := range m.after {
			s.next[d] = append(s.next[d], i)
		}
	}
	// Followers come later in the list, so one backward pass suffices.
	for i := n - 1; i >= 0; i-- {
		var most int64
		for _, j := range s.next[i] {
			most = max(most, s.rank[j])
		}
		s.rank[i] = max(p.mods[i].cost, 1) + most
	}
	s.ready[0].rank, s.ready[1].rank = s.rank, s.rank
	return s
}

// start begins loading the modules at idx and those they follow, unless
// an earlier call did, and returns a channel closed when all of them have
// been tried. Once ctx is done, the modules it began that are not loading
// yet fail with its error. background is passed on to load.
func (s *scheduler) start(ctx context.Context, idx []int, background bool) <-chan struct{} {
	s.mu.Lock()
	for _, i := range idx {
		s.begin(ctx, i, background)
	}
	s.dispatch()
	s.mu.Unlock()
	all := make(chan struct{})
	go func() {
		for _, i := range idx {
			<-s.done[i]
		}
		close(all)
	}()
	return all
}

// begin marks module i and those it follows as started and queues the
// ones with nothing left to wait for. s.mu is held.
func (s *scheduler) begin(ctx context.Context, i int, background bool) {
	if s.started[i] {
		return
	}
	s.started[i] = true
	s.ctxs[i] = ctx
	s.background[i] = background
	for _, d := range s.plan.mods[i].after {
		s.begin(ctx, d, background)
		if !s.finished[d] {
			s.waiting[i]++
		}
	}
	if s.waiting[i] == 0 {
		s.queue(i)
	}
}

// queue makes module i ready. s.mu is held.
func (s *scheduler) queue(i int) {
	q := &s.ready[0]
	if s.background[i] {
		q = &s.ready[1]
	}
	heap.Push(q, i)
}

// dispatch fills the free slots from the ready queues, foreground first.
// s.mu is held.
func (s *scheduler) dispatch() {
	for s.running < s.parallel {
		var i int
		switch {
		case s.ready[0].Len() > 0:
			i = heap.Pop(&s.ready[0]).(int)
		case s.ready[1].Len() > 0 && s.bgRunning < s.bgParallel:
			i = heap.Pop(&s.ready[1]).(int)
			s.bgRunning++
		default:
			return
		}
		s.running++
		go s.run(i)
	}
}

func (s *scheduler) run(i int) {
	m := s.plan.mods[i]
	s.mu.Lock()
	ctx, background := s.ctxs[i], s.background[i]
	s.mu.Unlock()
	var err error
	if ctx.Err() != nil {
		err = fmt.Errorf("loading %s: %w", m.name, ctx.Err())
	} else {
		err = s.load(ctx, m, background)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[i] = err
	s.finished[i] = true
	close(s.done[i])
	s.running--
	if background {
		s.bgRunning--
	}
	for _, j := range s.next[i] {
		if s.started[j] && !s.finished[j] {
			s.waiting[j]--
			if s.waiting[j] == 0 {
				s.queue(j)
			}
		}
	}
	s.dispatch()
}

// wait waits until the named modules have been tried and returns their
// failures, joined. It does not start them. Names not in the plan are
// taken as built in.
func (s *scheduler) wait(ctx context.Context, names ...string) error {
	var errs []error
	for _, n := range names {
		i, ok := s.plan.byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			continue
		}
		select {
		case <-s.done[i]:
			errs = append(errs, s.errs[i])
		case <-ctx.Done():
			return fmt.Errorf("waiting for module %s: %w", n, ctx.Err())
		}
	}
	return errors.Join(errs...)
}

// readyQueue is a max-heap of module indexes by rank, list order breaking
// ties.
type readyQueue struct {
	rank []int64
	idx  []int
}

func (q *readyQueue) Len() int { return len(q.idx) }
func (q *readyQueue) Less(a, b int) bool {
	ra, rb := q.rank[q.idx[a]], q.rank[q.idx[b]]
	if ra != rb {
		return ra > rb
	}
	return q.idx[a] < q.idx[b]
}
func (q *readyQueue) Swap(a, b int) { q.idx[a], q.idx[b] = q.idx[b], q.idx[a] }
func (q *readyQueue) Push(x any)    { q.idx = append(q.idx, x.(int)) }
func (q *readyQueue) Pop() any {
	x := q.idx[len(q.idx)-1]
	q.idx = q.idx[:len(q.idx)-1]
	return x
}
