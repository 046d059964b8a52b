// Command baseline serves the bare in-memory greylisting milter of
// bench/internal/baseline, the reference milter-grey is measured against by
// bench/run.sh. It listens on loopback or a unix socket only and stops on
// SIGTERM or SIGINT.
//
//	go run ./bench/baseline -listen inet:127.0.0.1:10093 -delay 1s
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/milter-grey/milter-grey/bench/internal/baseline"
	"github.com/milter-grey/milter-grey/bench/internal/loadgen"
)

func main() {
	listen := flag.String("listen", "inet:127.0.0.1:10093", "milter `socket`: inet:HOST:PORT (loopback only) or unix:/path")
	delay := flag.Duration("delay", time.Second, "greylisting delay")
	mask4 := flag.Int("ipv4-mask", 24, "IPv4 prefix length of the key's client part")
	mask6 := flag.Int("ipv6-mask", 64, "IPv6 prefix length of the key's client part")
	flag.Parse()
	network, address, err := loadgen.ParseAddr(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "baseline: %v\n", err)
		os.Exit(2)
	}
	if network == "unix" {
		os.Remove(address)
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "baseline: %v\n", err)
		os.Exit(1)
	}
	srv := baseline.New(baseline.Config{Delay: *delay, Mask4: *mask4, Mask6: *mask6})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "baseline: serving on %s\n", *listen)
	srv.Serve(ln) // returns when closed
	fmt.Fprintf(os.Stderr, "baseline: stopped with %d triplets in memory\n", srv.Len())
}
