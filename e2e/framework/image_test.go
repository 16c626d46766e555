package framework

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readTar returns the regular files of a tar and their modes.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]int64) {
	t.Helper()
	files, modes := map[string][]byte{}, map[string]int64{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, modes
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		files[hdr.Name], modes[hdr.Name] = data, hdr.Mode
	}
}

func blob(t *testing.T, files map[string][]byte, d ocispec.Descriptor) []byte {
	t.Helper()
	data, ok := files[blobPath(d.Digest)]
	if !ok {
		t.Fatalf("blob %s missing", d.Digest)
	}
	if digest.FromBytes(data) != d.Digest || int64(len(data)) != d.Size {
		t.Fatalf("blob %s: digest or size mismatch", d.Digest)
	}
	return data
}

func TestWritePauseImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pause")
	if err := os.WriteFile(bin, []byte("#!/bin/true\nnot really a pause binary\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, out := range []string{a, b} {
		if err := WritePauseImage(bin, out); err != nil {
			t.Fatalf("WritePauseImage: %v", err)
		}
	}
	archiveA, _ := os.ReadFile(a)
	archiveB, _ := os.ReadFile(b)
	if !bytes.Equal(archiveA, archiveB) {
		t.Error("archive is not deterministic")
	}

	files, _ := readTar(t, bytes.NewReader(archiveA))
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(files[ocispec.ImageLayoutFile], &layout); err != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout = %+v, %v", layout, err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(files[ocispec.ImageIndexFile], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json = %+v, %v", index, err)
	}
	md := index.Manifests[0]
	if md.Annotations[annotationImageName] != PauseImage || md.Annotations[ocispec.AnnotationRefName] != PauseImageTag {
		t.Errorf("index annotations = %v", md.Annotations)
	}

	var manifest ocispec.Manifest
	if err := json.Unmarshal(blob(t, files, md), &manifest); err != nil || len(manifest.Layers) != 1 {
		t.Fatalf("manifest = %+v, %v", manifest, err)
	}
	var config ocispec.Image
	if err := json.Unmarshal(blob(t, files, manifest.Config), &config); err != nil {
		t.Fatalf("config: %v", err)
	}
	if len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/pause" || config.OS != "linux" {
		t.Errorf("config = %+v", config)
	}

	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, manifest.Layers[0])))
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	layerTar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	if len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != digest.FromBytes(layerTar) {
		t.Errorf("diff id does not match the layer")
	}
	layerFiles, modes := readTar(t, bytes.NewReader(layerTar))
	want, _ := os.ReadFile(bin)
	if !bytes.Equal(layerFiles["pause"], want) || modes["pause"] != 0o755 {
		t.Errorf("layer: pause missing, different or not executable (mode %o)", modes["pause"])
	}
}
