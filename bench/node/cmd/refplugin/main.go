// refplugin is the reference NRI plugin of the node benchmark
// (scripts/bench-node.sh): the upstream Go stub library
// (github.com/containerd/nri/pkg/stub) with a CreateContainer handler that
// does what containerd/nri's "template" plugin does, nothing. The template
// and logger plugins themselves are separate Go modules that the Go module
// proxy does not serve, so this is the same library and handler shape, built
// from the proxy-served github.com/containerd/nri module.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct{ creates int }

func (p *plugin) CreateContainer(_ context.Context, _ *api.PodSandbox, _ *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.creates++
	return nil, nil, nil
}

func main() {
	socket := flag.String("socket", "", "NRI socket of the runtime")
	name := flag.String("name", "refplugin", "plugin name")
	idx := flag.String("idx", "10", "plugin index")
	flag.Parse()

	p := &plugin{}
	s, err := stub.New(p,
		stub.WithPluginName(*name),
		stub.WithPluginIdx(*idx),
		stub.WithSocketPath(*socket),
		stub.WithOnClose(func() {
			fmt.Fprintf(os.Stderr, "refplugin: connection closed after %d creates\n", p.creates)
			os.Exit(1)
		}),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "refplugin: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "refplugin: starting")
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "refplugin: %v\n", err)
		os.Exit(1)
	}
}
