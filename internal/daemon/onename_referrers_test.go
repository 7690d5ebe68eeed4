package daemon_test

import (
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nexmux/nexmux/fixtures/stack"
)

// referrer returns a small OCI artifact whose subject is img, as cosign or
// oras attach it.
func referrer(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	a, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	a = mutate.ConfigMediaType(mutate.MediaType(a, types.OCIManifestSchema1), "application/vnd.example.sig.v1+json")
	d, err := descriptorOf(img)
	if err != nil {
		t.Fatal(err)
	}
	return mutate.Subject(a, d).(v1.Image)
}

func descriptorOf(img v1.Image) (v1.Descriptor, error) {
	d, err := img.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := img.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	return v1.Descriptor{MediaType: mt, Digest: d, Size: n}, err
}

// TestOneNameReferrersTagSchemaReadsWhatItWrites: without the OCI 1.1
// referrers API (Nexus has none), a client that pushes an artifact with a
// subject keeps the list of the subject's referrers itself, under the tag
// "sha256-<hex>": it reads that index, adds its artifact and PUTs it back,
// all with its push token. The read must ask the hosted repository, where
// the PUT goes. Read through the group, it gets the proxy member's list of
// the upstream's own referrers, which hosted does not hold: the PUT is
// refused (MANIFEST_BLOB_UNKNOWN), or, by a lenient Nexus, stored as a
// list of manifests the hosted repository lacks.
func TestOneNameReferrersTagSchemaReadsWhatItWrites(t *testing.T) {
	st := stack.Start(t, stack.Options{Config: oneNameWithHosted()})
	base, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Nexus.Seed("team-a-proxy", "library/base", "1", base); err != nil {
		t.Fatal(err)
	}
	bd, _ := base.Digest()
	fallbackTag := "sha256-" + bd.Hex
	// The upstream's signature of base, listed under the tag schema in the
	// proxy member, as a proxy of a registry without the API holds it.
	upstream := mutate.IndexMediaType(mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: referrer(t, base)}), types.OCIImageIndex)
	if err := st.Nexus.SeedIndex("team-a-proxy", "library/base", fallbackTag, upstream); err != nil {
		t.Fatal(err)
	}
	// The team re-pushes the upstream image under its own name, then signs it.
	src := st.Host("team-a") + "/library/base:1"
	opts := []crane.Option{crane.WithTransport(st.Transport()), crane.WithAuth(authBasic()), crane.WithContext(ctxT(t))}
	if err := crane.Copy(src, src, opts...); err != nil {
		t.Fatalf("re-push of the upstream image: %v", err)
	}
	sig := referrer(t, base)
	sd, _ := sig.Digest()
	if err := remote.Write(ref(t, st.Host("team-a")+"/library/base@"+sd.String()), sig, st.Remote(ctxT(t))...); err != nil {
		t.Fatalf("push of a referrer through the one name: %v", err)
	}
	// Hosted lists the team's signature under the tag schema, and holds
	// every manifest it lists.
	hosted := st.Host("team-a-push") + "/library/base"
	idx, err := remote.Index(ref(t, hosted+":"+fallbackTag), st.Remote(ctxT(t))...)
	if err != nil {
		t.Fatalf("hosted's referrers tag: %v", err)
	}
	im, _ := idx.IndexManifest()
	var listed bool
	for _, m := range im.Manifests {
		listed = listed || m.Digest == sd
		if _, err := remote.Head(ref(t, hosted+"@"+m.Digest.String()), st.Remote(ctxT(t))...); err != nil {
			t.Errorf("hosted's referrers tag lists %s, which hosted lacks: %v", m.Digest, err)
		}
	}
	if !listed {
		t.Errorf("hosted's referrers tag lists %v, not the pushed %s", im.Manifests, sd)
	}
	for _, r := range st.Nexus.Requests() {
		if r.Method == http.MethodGet && r.Path == "/repository/team-a/v2/library/base/manifests/"+fallbackTag {
			t.Errorf("the push session read its referrers tag through the group")
		}
	}
}
