//go:build milter_grey_pprof

// This file is not part of any build of this directory: bench/profile.sh
// overlays it into cmd/milter-grey (go build -overlay, -tags
// milter_grey_pprof) to make a profiling variant of the daemon without
// touching its sources. With MILTER_GREY_PPROF=127.0.0.1:PORT in its
// environment the variant serves net/http/pprof there.
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

func init() {
	addr := os.Getenv("MILTER_GREY_PPROF")
	if addr == "" {
		return
	}
	runtime.SetMutexProfileFraction(100)
	runtime.SetBlockProfileRate(100_000) // one sample per 100 µs blocked
	go http.ListenAndServe(addr, nil)
}
