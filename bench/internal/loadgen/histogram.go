package loadgen

import (
	"math/bits"
	"time"
)

// A Histogram counts durations in log-linear buckets, as HdrHistogram
// does: values below 2^subBits nanoseconds are exact, larger ones fall in
// one of 2^subBits buckets per power of two, so a quantile is off by less
// than 1/2^subBits (1.6 %). Its size is fixed (about 18 KiB) whatever the
// number of samples, so a long run cannot grow it. The zero value is
// ready; it is not safe for concurrent use (one per worker, then Merge).
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    uint64 // nanoseconds; overflows after ~580 years of samples
	max    time.Duration
	min    time.Duration
}

const (
	subBits    = 6
	subCount   = 1 << subBits
	maxExp     = 40 // 2^40 ns ≈ 18 minutes: larger values are clamped
	numBuckets = (maxExp - subBits + 2) * subCount
)

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	if v >= 1<<maxExp {
		v = 1<<maxExp - 1
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [subCount, 2*subCount)
	return (e+1)*subCount + int(v>>e) - subCount
}

// bucketMid is the middle of bucket i's range, the value reported for it.
func bucketMid(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	e := i/subCount - 1
	lo := uint64(i%subCount+subCount) << e
	return lo + (uint64(1)<<e)/2
}

// Record adds one duration (negative counts as 0).
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.n++
	h.sum += uint64(d)
	if d > h.max {
		h.max = d
	}
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest sample, exact.
func (h *Histogram) Max() time.Duration { return h.max }

// Min is the smallest sample, exact.
func (h *Histogram) Min() time.Duration { return h.min }

// Mean is the average sample.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Quantile returns the sample at quantile q (0..1): the smallest value
// with at least q of the samples at or below it, to the bucket's
// precision, and never above Max.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = max(1, min(rank, h.n))
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return min(time.Duration(bucketMid(i)), h.max)
		}
	}
	return h.max
}
