package kmod

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeKernel records what a moduleLoader does.
type fakeKernel struct {
	mu       sync.Mutex
	order    []string // in the order loads began
	finished map[string]bool
	loads    map[string]int
	bg       map[string]bool
	running  int
	peak     int
	bgNow    int
	bgPeak   int
	fail     map[string]error
	// violations lists modules that began before one they follow ended.
	violations []string
	plan       *plan
	hold       time.Duration
}

func newFakeKernel(p *plan) *fakeKernel {
	return &fakeKernel{plan: p, finished: map[string]bool{}, loads: map[string]int{}, bg: map[string]bool{}, fail: map[string]error{}}
}

func (k *fakeKernel) load(_ context.Context, m module, background bool) error {
	k.mu.Lock()
	k.order = append(k.order, m.name)
	k.loads[m.name]++
	k.bg[m.name] = background
	k.running++
	k.peak = max(k.peak, k.running)
	if background {
		k.bgNow++
		k.bgPeak = max(k.bgPeak, k.bgNow)
	}
	for _, d := range m.after {
		if dn := k.plan.mods[d].name; !k.finished[dn] {
			k.violations = append(k.violations, m.name+" before "+dn)
		}
	}
	err := k.fail[m.name]
	k.mu.Unlock()
	time.Sleep(k.hold)
	k.mu.Lock()
	k.running--
	if background {
		k.bgNow--
	}
	k.finished[m.name] = true
	k.mu.Unlock()
	return err
}

func waitDone(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("loading never finished")
	}
}

func TestSchedulerRespectsOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		// A random DAG: each module follows a few earlier ones.
		n := 2 + r.IntN(30)
		var lines []string
		for i := 0; i < n; i++ {
			line := fmt.Sprintf("m%d:", i)
			for j := 0; j < i; j++ {
				if r.IntN(4) == 0 {
					line += fmt.Sprintf(" m%d", j)
				}
			}
			lines = append(lines, line)
		}
		p := testPlan(t, lines...)
		for i := range p.mods {
			p.mods[i].cost = int64(r.IntN(1000))
		}
		k := newFakeKernel(p)
		parallel := 1 + r.IntN(4)
		bgParallel := 1 + r.IntN(parallel)
		k.hold = time.Duration(r.IntN(2)) * time.Millisecond
		l := newScheduler(p, parallel, bgParallel, k.load)
		// Start a random subset, then everything, as boot then the rest.
		first := p.closure(fmt.Sprintf("m%d", r.IntN(n)))
		waitDone(t, l.start(t.Context(), first, false))
		all := make([]int, len(p.mods))
		for i := range all {
			all[i] = i
		}
		waitDone(t, l.start(t.Context(), all, true))
		if len(k.violations) > 0 {
			t.Fatalf("round %d: order broken: %v", round, k.violations)
		}
		if k.peak > parallel || k.bgPeak > bgParallel {
			t.Fatalf("round %d: %d loads at once (%d in the background) with %d slots (%d)", round, k.peak, k.bgPeak, parallel, bgParallel)
		}
		inFirst := map[string]bool{}
		for _, i := range first {
			inFirst[p.mods[i].name] = true
		}
		for _, m := range p.mods {
			if k.loads[m.name] != 1 {
				t.Fatalf("round %d: %s loaded %d times", round, m.name, k.loads[m.name])
			}
			if k.bg[m.name] == inFirst[m.name] {
				t.Fatalf("round %d: %s loaded with background=%v", round, m.name, k.bg[m.name])
			}
		}
	}
}

func TestSchedulerRunsIndependentsInParallel(t *testing.T) {
	p := testPlan(t, "a:", "b:", "c:", "d: a b c")
	started := make(chan string, 4)
	release := make(chan struct{})
	l := newScheduler(p, 3, 3, func(_ context.Context, m module, _ bool) error {
		started <- m.name
		if m.name != "d" {
			<-release
		}
		return nil
	})
	done := l.start(t.Context(), p.closure("d"), false)
	// a, b and c must all be loading at once before any of them ends.
	var got []string
	for len(got) < 3 {
		select {
		case n := <-started:
			got = append(got, n)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v started in parallel", got)
		}
	}
	slices.Sort(got)
	if !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("started %v", got)
	}
	select {
	case n := <-started:
		t.Fatalf("%s started before the modules it follows ended", n)
	default:
	}
	close(release)
	waitDone(t, done)
	if n := <-started; n != "d" {
		t.Fatalf("last started %s", n)
	}
}

func TestSchedulerErrors(t *testing.T) {
	p := testPlan(t, "soft:", "ext4: soft", "broken:", "after_broken: broken", "independent:")
	k := newFakeKernel(p)
	k.fail["soft"] = errors.New("no device")
	k.fail["broken"] = errors.New("bad module")
	l := newScheduler(p, 2, 2, k.load)
	waitDone(t, l.start(t.Context(), p.closure("ext4", "after_broken", "independent"), false))
	for _, n := range []string{"ext4", "after_broken", "independent"} {
		if k.loads[n] != 1 {
			t.Errorf("%s was not tried after a failure elsewhere", n)
		}
	}
	if err := l.wait(t.Context(), "ext4", "independent", "builtin_module"); err != nil {
		t.Errorf("wait for modules that loaded: %v", err)
	}
	if err := l.wait(t.Context(), "independent", "broken"); err == nil || !strings.Contains(err.Error(), "bad module") {
		t.Errorf("wait for a broken module: %v", err)
	}
}

func TestSchedulerCostliestChainFirst(t *testing.T) {
	// One slot: of the ready modules, the one heading the costliest chain
	// goes first, even when listed last.
	p := testPlan(t, "leaf:", "small:", "jbd2:", "ext4: jbd2", "tiny:")
	costs := map[string]int64{"leaf": 50, "small": 10, "jbd2": 5, "ext4": 2000, "tiny": 1}
	for i := range p.mods {
		p.mods[i].cost = costs[p.mods[i].name]
	}
	k := newFakeKernel(p)
	l := newScheduler(p, 1, 1, k.load)
	waitDone(t, l.start(t.Context(), p.closure("leaf", "small", "ext4", "tiny"), false))
	if want := []string{"jbd2", "ext4", "leaf", "small", "tiny"}; !reflect.DeepEqual(k.order, want) {
		t.Errorf("load order %v, want %v", k.order, want)
	}
}

func TestSchedulerWait(t *testing.T) {
	p := testPlan(t, "a:", "b: a")
	release := make(chan struct{})
	l := newScheduler(p, 2, 2, func(_ context.Context, m module, _ bool) error {
		<-release
		return nil
	})
	l.start(t.Context(), p.closure("b"), false)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.wait(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait on a module still loading: %v", err)
	}
	close(release)
	if err := l.wait(t.Context(), "a", "b"); err != nil {
		t.Errorf("wait: %v", err)
	}
}

func TestSchedulerCanceled(t *testing.T) {
	p := testPlan(t, "a:", "b: a", "c: b")
	ctx, cancel := context.WithCancel(t.Context())
	l := newScheduler(p, 1, 1, func(_ context.Context, m module, _ bool) error {
		if m.name == "a" {
			cancel()
		}
		return nil
	})
	waitDone(t, l.start(ctx, p.closure("c"), false))
	if err := l.wait(t.Context(), "a"); err != nil {
		t.Errorf("a loaded before the cancel: %v", err)
	}
	if err := l.wait(t.Context(), "c"); !errors.Is(err, context.Canceled) {
		t.Errorf("c after the cancel: %v", err)
	}
}

func TestSchedulerForegroundFirst(t *testing.T) {
	// One slot. Background modules are queued; while the first one loads,
	// a foreground start comes in: it goes next, ahead of the queue.
	p := testPlan(t, "bg1:", "bg2:", "bg3:", "fg:")
	var mu sync.Mutex
	var order []string
	first := make(chan struct{})
	release := make(chan struct{})
	l := newScheduler(p, 1, 1, func(_ context.Context, m module, _ bool) error {
		mu.Lock()
		order = append(order, m.name)
		n := len(order)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-release
		}
		return nil
	})
	bg := l.start(t.Context(), []int{0, 1, 2}, true)
	<-first
	fg := l.start(t.Context(), p.closure("fg"), false)
	close(release)
	waitDone(t, fg)
	waitDone(t, bg)
	if len(order) != 4 || order[1] != "fg" {
		t.Errorf("load order %v, want fg second", order)
	}
}

func TestSchedulerKeepsASlotFromTheBackground(t *testing.T) {
	// Two slots, one for the background: two background modules never
	// load at once, and a foreground one still gets the other slot.
	p := testPlan(t, "bg1:", "bg2:", "fg:")
	started := make(chan string, 3)
	release := make(chan struct{})
	l := newScheduler(p, 2, 1, func(_ context.Context, m module, _ bool) error {
		started <- m.name
		<-release
		return nil
	})
	bg := l.start(t.Context(), []int{0, 1}, true)
	if n := <-started; n != "bg1" {
		t.Fatalf("first started %s", n)
	}
	select {
	case n := <-started:
		t.Fatalf("%s started while bg1 held the background slot", n)
	case <-time.After(50 * time.Millisecond):
	}
	fg := l.start(t.Context(), p.closure("fg"), false)
	select {
	case n := <-started:
		if n != "fg" {
			t.Fatalf("started %s, want fg", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fg did not get the free slot")
	}
	close(release)
	waitDone(t, fg)
	waitDone(t, bg)
}
