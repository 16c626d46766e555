package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/nri-netattach/nri-netattach/attach"
)

// statusCmd prints what is attached now, from the state directory, to out;
// errors and warnings go to errOut.
func statusCmd(args []string, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	pod := fs.String("pod", "", "only this pod (NAMESPACE/NAME)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(errOut, "nri-netattach:", err)
		return 1
	}
	recs, err := attach.ListRecords(cfg.StateDir)
	if err != nil {
		fmt.Fprintln(errOut, "nri-netattach: warning:", err)
	}
	var shown []*attach.Record
	for _, r := range recs {
		if *pod == "" || r.PodName() == *pod {
			shown = append(shown, r)
		}
	}
	sort.Slice(shown, func(i, j int) bool {
		return shown[i].PodName() < shown[j].PodName() || shown[i].PodName() == shown[j].PodName() && shown[i].Created.Before(shown[j].Created)
	})
	if *asJSON {
		if shown == nil {
			shown = []*attach.Record{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(statusView(shown)); err != nil {
			return 1
		}
		return 0
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tSANDBOX\tSTATE\tNETWORK\tINTERFACE\tIPS\tMAC")
	for _, r := range shown {
		if len(r.Attachments) == 0 {
			fmt.Fprintf(tw, "%s\t%.12s\t%s\t-\t-\t-\t-\n", r.PodName(), r.SandboxID, r.State)
		}
		for _, a := range r.Attachments {
			ips, mac := "-", "-"
			if len(a.Statuses) > 0 {
				ips = strings.Join(a.Statuses[0].IPs, ",")
				mac = a.Statuses[0].MAC
			}
			fmt.Fprintf(tw, "%s\t%.12s\t%s\t%s\t%s\t%s\t%s\n", r.PodName(), r.SandboxID, r.State, a.Network, a.IfName, ips, mac)
		}
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	if *pod != "" && len(shown) == 0 {
		fmt.Fprintf(errOut, "nri-netattach: no attachments recorded for pod %s\n", *pod)
		return 1
	}
	return 0
}

// podStatus is the JSON view of one sandbox: without the CNI configuration
// and arguments, which are internal.
type podStatus struct {
	Pod         string                 `json:"pod"`
	UID         string                 `json:"uid"`
	SandboxID   string                 `json:"sandboxId"`
	NetNS       string                 `json:"netns"`
	State       string                 `json:"state"`
	Attachments []attach.NetworkStatus `json:"attachments"`
}

func statusView(recs []*attach.Record) []podStatus {
	out := make([]podStatus, 0, len(recs))
	for _, r := range recs {
		ps := podStatus{Pod: r.PodName(), UID: r.UID, SandboxID: r.SandboxID, NetNS: r.NetNS, State: r.State, Attachments: []attach.NetworkStatus{}}
		for _, a := range r.Attachments {
			if len(a.Statuses) == 0 {
				ps.Attachments = append(ps.Attachments, attach.NetworkStatus{Name: a.Network, Interface: a.IfName})
			}
			ps.Attachments = append(ps.Attachments, a.Statuses...)
		}
		out = append(out, ps)
	}
	return out
}
