// Command vcsim-launcher starts govmomi's vCenter simulator (the VPX model) on loopback for the
// fence-rs VMware SOAP tests.
//
// It prints one line on stdout: "<sdk-url> <ca-pem-path or ->", then serves until stdin closes
// or SIGTERM/SIGINT arrives.
//
// On top of the stock simulator (Debian's govmomi 0.24) it adds what the tests need and that
// version lacks:
//   - property-collector paging: RetrievePropertiesEx honours options.maxObjects and hands out a
//     token; ContinueRetrievePropertiesEx / CancelRetrievePropertiesEx serve and drop the rest
//     (real vCenter pages results; 0.24's simulator returns everything at once);
//   - TLS with a freshly generated ECDSA CA + leaf certificate (the built-in test certificate
//     has a 1024-bit RSA key that rustls refuses);
//   - fixed credentials, so that a wrong password is refused;
//   - test fixtures: VMs moved into sub-folders, renames (UTF-8 names, duplicate names across
//     datacenters or folders), suspended VMs;
//   - SearchIndex.FindAllByUuid (0.24's simulator lacks the method; -no-find-all-by-uuid keeps
//     it missing, the simulator then answers the MethodNotFound fault a pre-5.0 server would);
//   - VMs sharing a BIOS UUID (-same-uuid A=B), as clones that kept their UUID;
//   - optional static files (VMware's WSDL) for the reference Python agent;
//   - an idle session timeout (-session-idle-timeout), to test re-login after expiry;
//   - several hosts in the cluster (-hosts N; VMs are placed at random among them) and
//     migrations on request: a line "migrate VM HOST" on stdin relocates VM to host HOST
//     through the SOAP API (RelocateVM_Task) and answers "migrated VM HOST" (or "error: ...")
//     on stdout.
//
// Build in GOPATH mode: GOPATH=/usr/share/gocode GO111MODULE=off go build -o BIN .
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// pagingCollector wraps the simulator's PropertyCollector and adds result paging.
//
// The simulator makes one collector per session with reflect.New of the registered type, so the
// wrapper embeds the collector by value and creates its maps lazily.
type pagingCollector struct {
	simulator.PropertyCollector
	mu     sync.Mutex
	next   int
	pages  map[string][]types.ObjectContent
	limits map[string]int
}

func (pc *pagingCollector) page(objs []types.ObjectContent, max int) *types.RetrieveResult {
	if max <= 0 || len(objs) <= max {
		return &types.RetrieveResult{Objects: objs}
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.pages == nil {
		pc.pages = map[string][]types.ObjectContent{}
		pc.limits = map[string]int{}
	}
	pc.next++
	tok := fmt.Sprintf("page-%d", pc.next)
	pc.pages[tok] = objs[max:]
	pc.limits[tok] = max
	return &types.RetrieveResult{Objects: objs[:max], Token: tok}
}

func (pc *pagingCollector) RetrievePropertiesEx(ctx *simulator.Context, r *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, r)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	max := int(r.Options.MaxObjects)
	body.Res.Returnval = pc.page(body.Res.Returnval.Objects, max)
	return body
}

func (pc *pagingCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, r *types.ContinueRetrievePropertiesEx) soap.HasFault {
	pc.mu.Lock()
	rest, ok := pc.pages[r.Token]
	max := pc.limits[r.Token]
	delete(pc.pages, r.Token)
	delete(pc.limits, r.Token)
	pc.mu.Unlock()
	body := new(methods.ContinueRetrievePropertiesExBody)
	if !ok {
		body.Fault_ = simulator.Fault("unknown token", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *pc.page(rest, max)}
	return body
}

func (pc *pagingCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, r *types.CancelRetrievePropertiesEx) soap.HasFault {
	pc.mu.Lock()
	delete(pc.pages, r.Token)
	delete(pc.limits, r.Token)
	pc.mu.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: new(types.CancelRetrievePropertiesExResponse)}
}

// findAllByUUID sits in front of the simulator's HTTP handler and answers
// SearchIndex.FindAllByUuid, which 0.24's simulator does not implement; every other request goes
// to the simulator unchanged.
//
// The session check stays the simulator's: the request is first replayed to it as FindByUuid
// (same arguments), and a fault there (NotAuthenticated, unknown object, ...) is the answer.
// Otherwise the answer lists every VirtualMachine whose config.uuid (vmSearch, instanceUuid
// false or absent; compared case-insensitively) or config.instanceUuid (instanceUuid true)
// matches, restricted to the VMs under the given datacenter if there is one.
type findAllByUUID struct {
	next http.Handler
}

// findAllEnvelope decodes the request body (element names match whatever the namespace prefix).
type findAllEnvelope struct {
	Body struct {
		Req *types.FindAllByUuid `xml:"FindAllByUuid"`
	} `xml:"Body"`
}

func (h *findAllByUUID) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !bytes.Contains(body, []byte("FindAllByUuid")) {
		h.next.ServeHTTP(w, r)
		return
	}
	var env findAllEnvelope
	if err := xml.Unmarshal(body, &env); err != nil || env.Body.Req == nil {
		// Not a FindAllByUuid call after all (the word in an argument): the simulator decides.
		h.next.ServeHTTP(w, r)
		return
	}
	req := env.Body.Req

	// Authentication and session bookkeeping by the simulator, through FindByUuid.
	probe := bytes.ReplaceAll(body, []byte("FindAllByUuid"), []byte("FindByUuid"))
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(probe))
	r2.ContentLength = int64(len(probe))
	rec := httptest.NewRecorder()
	h.next.ServeHTTP(rec, r2)
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	if rec.Code != http.StatusOK {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}

	found := findAllVMs(req)
	var out bytes.Buffer
	out.WriteString(xml.Header)
	out.WriteString(`<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" ` +
		`xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ` +
		`xmlns:xsd="http://www.w3.org/2001/XMLSchema" ` +
		`xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` +
		`<soapenv:Body><FindAllByUuidResponse xmlns="urn:vim25">`)
	for _, ref := range found {
		out.WriteString(`<returnval type="`)
		_ = xml.EscapeText(&out, []byte(ref.Type))
		out.WriteString(`">`)
		_ = xml.EscapeText(&out, []byte(ref.Value))
		out.WriteString(`</returnval>`)
	}
	out.WriteString(`</FindAllByUuidResponse></soapenv:Body></soapenv:Envelope>`)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Bytes())
}

// findAllVMs: the VMs matching req, sorted by managed object id. Host search (vmSearch false)
// finds nothing: the tests only look for VMs.
func findAllVMs(req *types.FindAllByUuid) []types.ManagedObjectReference {
	var found []types.ManagedObjectReference
	if !req.VmSearch {
		return found
	}
	byInstance := req.InstanceUuid != nil && *req.InstanceUuid
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm, ok := e.(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		var id string
		var parent *types.ManagedObjectReference
		simulator.Map.WithLock(vm, func() {
			if vm.Config != nil {
				if byInstance {
					id = vm.Config.InstanceUuid
				} else {
					id = vm.Config.Uuid
				}
			}
			parent = vm.Parent
		})
		if id == "" || !strings.EqualFold(id, req.Uuid) {
			continue
		}
		if req.Datacenter != nil && !under(parent, *req.Datacenter) {
			continue
		}
		found = append(found, vm.Reference())
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Value < found[j].Value })
	return found
}

// under reports whether ref or one of its ancestors is anc (bounded walk up the parents).
func under(ref *types.ManagedObjectReference, anc types.ManagedObjectReference) bool {
	for i := 0; ref != nil && i < 64; i++ {
		if *ref == anc {
			return true
		}
		e, ok := simulator.Map.Get(*ref).(mo.Entity)
		if !ok {
			return false
		}
		ref = e.Entity().Parent
	}
	return false
}

// makeCerts generates a CA and a leaf for 127.0.0.1/localhost signed by it; writes the CA PEM.
func makeCerts(caPath string) (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vcsim test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(caPath, pemCA, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}, nil
}

func main() {
	vms := flag.Int("vms", 3, "virtual machines per datacenter")
	dcs := flag.Int("datacenters", 1, "number of datacenters")
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	useTLS := flag.Bool("tls", false, "serve HTTPS with a generated certificate")
	caOut := flag.String("ca-out", "", "with -tls: write the CA certificate (PEM) here")
	user := flag.String("user", "fenceuser", "accepted user name")
	pass := flag.String("password", "fencepw", "accepted password")
	wsdlDir := flag.String("wsdl-dir", "", "serve the files of this directory under /sdk/")
	idle := flag.Duration("session-idle-timeout", 0, "expire sessions idle for longer than this (0: never)")
	hosts := flag.Int("hosts", 1, "hosts in the cluster (VMs are spread over them at random)")
	noFindAll := flag.Bool("no-find-all-by-uuid", false, "leave SearchIndex.FindAllByUuid unimplemented (MethodNotFound), as 0.24's simulator has it")
	var moves, renames, suspends, sameUUIDs multiFlag
	flag.Var(&sameUUIDs, "same-uuid", "A=B: give VM A the BIOS UUID (config.uuid) of VM B, names as created, applied first (repeatable)")
	flag.Var(&moves, "move", "NAME=FOLDER: move a VM into a sub-folder of its datacenter's VM folder, applied before renames (repeatable)")
	flag.Var(&renames, "rename", "OLD=NEW: rename a VM before serving (repeatable)")
	flag.Var(&suspends, "suspend", "NAME: suspend a VM before serving (repeatable)")
	flag.Parse()

	log.SetOutput(os.Stderr)

	// Sessions idle for longer than this are dropped server-side (checked at that interval),
	// as vCenter does after its session timeout.
	simulator.SessionIdleTimeout = *idle

	m := simulator.VPX()
	m.Datacenter = *dcs
	m.Host = 0
	m.Cluster = 1
	m.ClusterHost = *hosts
	m.Pool = 0
	m.Portgroup = 0
	m.Machine = *vms
	if err := m.Create(); err != nil {
		log.Fatalf("model: %v", err)
	}
	defer m.Remove()

	// Replace the property collector by the paging wrapper.
	pcRef := m.ServiceContent.PropertyCollector
	orig, ok := simulator.Map.Get(pcRef).(*simulator.PropertyCollector)
	if !ok {
		log.Fatalf("property collector %v has unexpected type", pcRef)
	}
	simulator.Map.Put(&pagingCollector{PropertyCollector: *orig})

	m.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *pass)}
	caPath := "-"
	if *useTLS {
		if *caOut == "" {
			log.Fatal("-tls needs -ca-out")
		}
		cert, err := makeCerts(*caOut)
		if err != nil {
			log.Fatalf("certificates: %v", err)
		}
		m.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		caPath = *caOut
	}
	if *wsdlDir != "" {
		entries, err := os.ReadDir(*wsdlDir)
		if err != nil {
			log.Fatalf("wsdl dir: %v", err)
		}
		for _, e := range entries {
			file := filepath.Join(*wsdlDir, e.Name())
			// HandleFunc registers when the server is created (the mux does not exist yet).
			m.Service.HandleFunc("/sdk/"+e.Name(), func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/xml")
				http.ServeFile(w, r, file)
			})
		}
	}
	s := m.Service.NewServer()
	defer s.Close()
	if !*noFindAll {
		// Set before any client knows the URL (it is printed below), so no request is in
		// flight; the server reads its Handler per request.
		s.Config.Handler = &findAllByUUID{next: s.Config.Handler}
	}

	if len(sameUUIDs) > 0 || len(moves) > 0 || len(renames) > 0 || len(suspends) > 0 {
		if err := prepare(s.URL, sameUUIDs, moves, renames, suspends); err != nil {
			log.Fatalf("prepare: %v", err)
		}
	}

	u := *s.URL
	u.User = nil
	fmt.Printf("%s %s\n", u.String(), caPath)
	os.Stdout.Sync()

	// Stdin: end of file stops the simulator; each line is a change made while serving, through
	// the SOAP API as a client would: "migrate VM HOST" (answered "migrated VM HOST"), "rename
	// OLD=NEW", "move NAME=FOLDER", "suspend NAME", "same-uuid A=B" (answered "ok"); failures
	// are answered "error: …".
	done := make(chan struct{}, 2)
	go func() {
		// ReadSlice keeps memory bounded: an overlong line (stdin from /dev/zero, as the
		// benchmark scripts give it) is read and dropped piece by piece.
		r := bufio.NewReaderSize(os.Stdin, 4096)
		for {
			line, err := r.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				break
			}
			fields := strings.Fields(string(line))
			if len(fields) == 3 && fields[0] == "migrate" {
				if err := migrate(s.URL, fields[1], fields[2]); err != nil {
					fmt.Printf("error: %v\n", err)
				} else {
					fmt.Printf("migrated %s %s\n", fields[1], fields[2])
				}
				os.Stdout.Sync()
				continue
			}
			if len(fields) != 2 {
				fmt.Println("error: want COMMAND ARGUMENT")
				os.Stdout.Sync()
				continue
			}
			var su, mv, rn, sp []string
			switch fields[0] {
			case "rename":
				rn = fields[1:]
			case "move":
				mv = fields[1:]
			case "suspend":
				sp = fields[1:]
			case "same-uuid":
				su = fields[1:]
			default:
				fmt.Printf("error: unknown command %q\n", fields[0])
				os.Stdout.Sync()
				continue
			}
			if err := prepare(s.URL, su, mv, rn, sp); err != nil {
				fmt.Printf("error: %v\n", err)
			} else {
				fmt.Println("ok")
			}
			os.Stdout.Sync()
		}
		done <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-sig:
	}
}

// migrate relocates VM name to host hostName through the SOAP API, as vMotion would.
func migrate(u *url.URL, name, hostName string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return err
	}
	defer c.Logout(ctx)
	f := find.NewFinder(c.Client, true)
	dc, err := f.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(ctx, name)
	if err != nil {
		return err
	}
	host, err := f.HostSystem(ctx, hostName)
	if err != nil {
		return err
	}
	ref := host.Reference()
	task, err := vm.Relocate(ctx, types.VirtualMachineRelocateSpec{Host: &ref}, types.VirtualMachineMovePriorityDefaultPriority)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

// prepare applies UUID copies, moves, renames and suspends (in that order) through the SOAP API,
// as a client would.
func prepare(u *url.URL, sameUUIDs, moves, renames, suspends []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return err
	}
	defer c.Logout(ctx)
	finder := find.NewFinder(c.Client, false)
	dcs, err := finder.DatacenterList(ctx, "*")
	if err != nil {
		return err
	}
	lookup := func(name string) (*find.Finder, error) {
		for _, dc := range dcs {
			f := find.NewFinder(c.Client, false)
			f.SetDatacenter(dc)
			if _, err := f.VirtualMachine(ctx, name); err == nil {
				return f, nil
			}
		}
		return nil, fmt.Errorf("no VM %q", name)
	}
	for _, su := range sameUUIDs {
		kv := strings.SplitN(su, "=", 2)
		if len(kv) != 2 {
			return fmt.Errorf("bad -same-uuid %q", su)
		}
		fb, err := lookup(kv[1])
		if err != nil {
			return err
		}
		vmB, _ := fb.VirtualMachine(ctx, kv[1])
		var b mo.VirtualMachine
		if err := vmB.Properties(ctx, vmB.Reference(), []string{"config.uuid"}, &b); err != nil {
			return fmt.Errorf("uuid of %s: %v", kv[1], err)
		}
		if b.Config == nil || b.Config.Uuid == "" {
			return fmt.Errorf("%s has no config.uuid", kv[1])
		}
		fa, err := lookup(kv[0])
		if err != nil {
			return err
		}
		vmA, _ := fa.VirtualMachine(ctx, kv[0])
		task, err := vmA.Reconfigure(ctx, types.VirtualMachineConfigSpec{Uuid: b.Config.Uuid})
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("same-uuid %s: %v", su, err)
		}
	}
	for _, mv := range moves {
		kv := strings.SplitN(mv, "=", 2)
		if len(kv) != 2 {
			return fmt.Errorf("bad -move %q", mv)
		}
		f, err := lookup(kv[0])
		if err != nil {
			return err
		}
		vm, _ := f.VirtualMachine(ctx, kv[0])
		dc, err := f.DefaultDatacenter(ctx)
		if err != nil {
			return err
		}
		folders, err := dc.Folders(ctx)
		if err != nil {
			return err
		}
		sub, err := f.Folder(ctx, folders.VmFolder.InventoryPath+"/"+kv[1])
		if err != nil {
			if sub, err = folders.VmFolder.CreateFolder(ctx, kv[1]); err != nil {
				return fmt.Errorf("create folder %s: %v", kv[1], err)
			}
		}
		task, err := sub.MoveInto(ctx, []types.ManagedObjectReference{vm.Reference()})
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("move %s: %v", mv, err)
		}
	}
	for _, r := range renames {
		kv := strings.SplitN(r, "=", 2)
		if len(kv) != 2 {
			return fmt.Errorf("bad -rename %q", r)
		}
		f, err := lookup(kv[0])
		if err != nil {
			return err
		}
		vm, _ := f.VirtualMachine(ctx, kv[0])
		task, err := vm.Rename(ctx, kv[1])
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("rename %s: %v", r, err)
		}
	}
	for _, name := range suspends {
		f, err := lookup(name)
		if err != nil {
			return err
		}
		vm, _ := f.VirtualMachine(ctx, name)
		task, err := vm.Suspend(ctx)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx); err != nil {
			return fmt.Errorf("suspend %s: %v", name, err)
		}
	}
	return nil
}
