package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/milter-grey/milter-grey/greylist"
)

// InstrumentStore returns s with every operation timed and counted by
// result: milter_grey_store_operations_total{op,result} and
// milter_grey_store_operation_seconds{op}. A Get of an absent key is a
// "miss", not an error; an error returned by the caller's own function
// (an UpdateFunc, a Scan callback) is not a store error either.
func (m *Metrics) InstrumentStore(s greylist.Store) greylist.Store {
	st := &store{s: s}
	for op, om := range map[string]*opMetrics{OpUpdate: &st.update, OpGet: &st.get, OpPut: &st.put, OpDelete: &st.delete, OpScan: &st.scan} {
		*om = opMetrics{
			seconds: m.storeSeconds.WithLabelValues(op),
			ok:      m.storeOps.WithLabelValues(op, ResultOK),
			err:     m.storeOps.WithLabelValues(op, ResultError),
		}
	}
	st.get.miss = m.storeOps.WithLabelValues(OpGet, ResultMiss) // only a Get misses
	return st
}

// opMetrics are one operation's series, looked up once: a decision makes
// one or two store operations, and a label lookup hashes its values.
type opMetrics struct {
	seconds       prometheus.Observer
	ok, miss, err prometheus.Counter
}

type store struct {
	s                              greylist.Store
	update, get, put, delete, scan opMetrics
}

func (om *opMetrics) observe(start time.Time, spent time.Duration, result string) {
	om.seconds.Observe((time.Since(start) - spent).Seconds())
	switch result {
	case ResultOK:
		om.ok.Inc()
	case ResultMiss:
		if om.miss != nil {
			om.miss.Inc()
		}
	default:
		om.err.Inc()
	}
}

// result classifies err; callerErr is what the caller's function returned.
func result(err, callerErr error) string {
	switch {
	case err == nil:
		return ResultOK
	case callerErr != nil && errors.Is(err, callerErr):
		return ResultOK // the caller stopped it
	}
	return ResultError
}

func (st *store) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	start := time.Now()
	var fnErr error
	err := st.s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		next, ttl, err := fn(cur)
		fnErr = err
		return next, ttl, err
	})
	st.update.observe(start, 0, result(err, fnErr))
	return err
}

func (st *store) Get(ctx context.Context, key string) (*greylist.Record, time.Time, error) {
	start := time.Now()
	rec, exp, err := st.s.Get(ctx, key)
	res := result(err, nil)
	if errors.Is(err, greylist.ErrNotFound) {
		res = ResultMiss
	}
	st.get.observe(start, 0, res)
	return rec, exp, err
}

func (st *store) Put(ctx context.Context, key string, rec *greylist.Record, ttl time.Duration) error {
	start := time.Now()
	err := st.s.Put(ctx, key, rec, ttl)
	st.put.observe(start, 0, result(err, nil))
	return err
}

func (st *store) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := st.s.Delete(ctx, key)
	st.delete.observe(start, 0, result(err, nil))
	return err
}

// Scan is timed without the time fn takes: a slow admin client reading a
// dump is not store latency.
func (st *store) Scan(ctx context.Context, prefix string, fn func(key string, rec *greylist.Record, expires time.Time) error) error {
	start := time.Now()
	var spent time.Duration
	var fnErr error
	err := st.s.Scan(ctx, prefix, func(key string, rec *greylist.Record, expires time.Time) error {
		t := time.Now()
		fnErr = fn(key, rec, expires)
		spent += time.Since(t)
		return fnErr
	})
	st.scan.observe(start, spent, result(err, fnErr))
	return err
}

func (st *store) Close() error { return st.s.Close() }
