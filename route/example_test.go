package route_test

import (
	"fmt"

	"github.com/nexmux/nexmux/route"
)

// Build a table from the strings users give as --route, --port and
// --default-route, then route connections by server name and by port.
func Example() {
	t, err := route.Build(route.Spec{
		Routes: []string{
			"team-a.example.com=pull:team-a,push:team-a-hosted",
			"*.dev.example.com=dev",
		},
		Ports:       []string{"8082=team-a"},
		Default:     "fallback",
		ListenPorts: []int{8443},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"TEAM-A.example.com.", "x.dev.example.com:443", "other.example.com"} {
		if r := t.LookupHost(name); r != nil {
			fmt.Printf("%s => %s\n", name, r.Target)
		} else {
			fmt.Printf("%s => no route\n", name)
		}
	}
	fmt.Println(":8082 =>", t.LookupPort(8082).Target)
	fmt.Println("no server name =>", t.Default().Target)

	r := t.LookupHost("team-a.example.com")
	fmt.Println("HEAD blob goes to", r.Target.Repo("HEAD", "/v2/app/blobs/sha256:00", ""))
	fmt.Println("GET manifest goes to", r.Target.Repo("GET", "/v2/app/manifests/1.0", ""))
	// Output:
	// TEAM-A.example.com. => pull:team-a,push:team-a-hosted
	// x.dev.example.com:443 => dev
	// other.example.com => no route
	// :8082 => team-a
	// no server name => fallback
	// HEAD blob goes to team-a-hosted
	// GET manifest goes to team-a
}

// Build reports every problem at once, one per line.
func ExampleBuild_errors() {
	_, err := route.Build(route.Spec{
		Routes:      []string{"a.example.com=team-a", "A.example.com.=team-b", "*.com=x"},
		Ports:       []string{"8443=team-a"},
		ListenPorts: []int{8443},
	})
	fmt.Println(err)
	// Output:
	// route A.example.com.=team-b: a.example.com is already routed (a.example.com => team-a)
	// route "*.com=x": wildcard "*.com" would match a whole top-level domain; use *.domain.tld
	// port "8443=team-a": 8443 is the --listen port, where routing is by server name; a port route there would shadow every --route
}
