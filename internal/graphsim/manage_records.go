package graphsim

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AuditTimeLayout is how an audit record's CreationTime is rendered: UTC
// to the second, without a zone suffix, as in Microsoft's samples.
const AuditTimeLayout = "2006-01-02T15:04:05"

// AuditRecord returns one realistic audit record of a content type's
// workload, in the common schema (CreationTime, Id, Operation,
// OrganizationId, RecordType, ResultStatus, UserKey, UserType, Version,
// Workload, ClientIP, ObjectId, UserId) followed by the workload's own
// fields, some of them nested. The other values are drawn
// deterministically from id; tenant "" is DefaultTenantID.
func AuditRecord(contentType, id string, created time.Time, tenant string) []byte {
	h := fnv.New64a()
	h.Write([]byte(id))
	var fb auditFields
	var sc auditScratch
	fb.begin(nil)
	writeAuditRecord(&fb, &sc, auditKind(contentType), h.Sum64(), []byte(id), created.Unix(), tenantOr(tenant), false)
	return fb.end()
}

// ReorderKeys returns the same JSON object with its top-level keys in
// another order drawn from seed, as when the service sends a record again
// in a later blob. Values are kept byte for byte. Anything that is not a
// JSON object, or an object of fewer than two keys, is returned as it is.
func ReorderKeys(rec []byte, seed uint64) []byte {
	dec := json.NewDecoder(bytes.NewReader(rec))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return rec
	}
	type member struct {
		key []byte
		val json.RawMessage
	}
	var ms []member
	for dec.More() {
		tok, err := dec.Token()
		k, ok := tok.(string)
		if err != nil || !ok {
			return rec
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return rec
		}
		ms = append(ms, member{jsonString(k), v})
	}
	if len(ms) < 2 {
		return rec
	}
	perm := permutation(len(ms), rand.New(rand.NewPCG(seed, 0x6a09e667f3bcc908)))
	out := make([]byte, 0, len(rec))
	out = append(out, '{')
	for i, p := range perm {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, ms[p].key...)
		out = append(out, ':')
		out = append(out, ms[p].val...)
	}
	return append(out, '}')
}

// permutation returns a random order of n > 1 items that is never the
// identity.
func permutation(n int, r *rand.Rand) []int {
	p := r.Perm(n)
	for i, v := range p {
		if i != v {
			return p
		}
	}
	// Identity: rotate by one.
	return append(p[1:], p[0])
}

func tenantOr(t string) string {
	if t == "" {
		return DefaultTenantID
	}
	return t
}

// Record kinds, one per content type.
const (
	kindAAD = iota
	kindExchange
	kindSharePoint
	kindGeneral
	kindDLP
)

func auditKind(contentType string) int {
	switch contentType {
	case ContentAzureActiveDirectory:
		return kindAAD
	case ContentExchange:
		return kindExchange
	case ContentSharePoint:
		return kindSharePoint
	case ContentDLP:
		return kindDLP
	}
	return kindGeneral
}

// auditFields writes a record as a JSON object to b and remembers where
// each top-level member ("Key":value) starts, so that the object can be
// written again in another key order.
type auditFields struct {
	b    []byte
	offs []int
}

// begin starts an object at the end of b.
func (f *auditFields) begin(b []byte) {
	f.b = append(b, '{')
	f.offs = f.offs[:0]
}

// end closes the object and returns b with it.
func (f *auditFields) end() []byte {
	f.b = append(f.b, '}')
	return f.b
}

func (f *auditFields) key(k string) {
	if len(f.offs) > 0 {
		f.b = append(f.b, ',')
	}
	f.offs = append(f.offs, len(f.b))
	f.b = append(f.b, '"')
	f.b = append(f.b, k...)
	f.b = append(f.b, '"', ':')
}

// str writes a string member; generated values need no escaping.
func (f *auditFields) str(k, v string) { strMember(f, k, v) }

func strMember[T ~string | ~[]byte](f *auditFields, k string, v T) {
	f.key(k)
	f.b = append(f.b, '"')
	f.b = append(f.b, v...)
	f.b = append(f.b, '"')
}

func (f *auditFields) num(k string, v int) {
	f.key(k)
	f.b = strconv.AppendInt(f.b, int64(v), 10)
}

func (f *auditFields) raw(k, v string) {
	f.key(k)
	f.b = append(f.b, v...)
}

func (f *auditFields) guid(k string, hi, lo uint64) {
	f.key(k)
	f.b = append(f.b, '"')
	f.b = appendGUID(f.b, hi, lo)
	f.b = append(f.b, '"')
}

// permuted appends the ended object to out with its members in perm's
// order.
func (f *auditFields) permuted(out []byte, perm []int) []byte {
	out = append(out, '{')
	for i, j := range perm {
		end := len(f.b) - 1 // before the closing brace
		if j+1 < len(f.offs) {
			end = f.offs[j+1] - 1 // before the comma
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, f.b[f.offs[j]:end]...)
	}
	return append(out, '}')
}

var (
	hexPairs = func() (t [512]byte) {
		const digits = "0123456789abcdef"
		for i := range 256 {
			t[2*i], t[2*i+1] = digits[i>>4], digits[i&0xf]
		}
		return t
	}()
	guidHiPos = [8]uint8{0, 2, 4, 6, 9, 11, 14, 16}
	guidLoPos = [8]uint8{19, 21, 24, 26, 28, 30, 32, 34}
)

// appendGUID writes a version 4 GUID made of hi and lo.
func appendGUID(b []byte, hi, lo uint64) []byte {
	hi = hi&^(0xf<<12) | 0x4<<12
	lo = lo&^(0x3<<62) | 0x2<<62
	g := [36]byte{8: '-', 13: '-', 18: '-', 23: '-'}
	for k := range 8 {
		v, p := int(hi>>(56-8*k)&0xff), guidHiPos[k]
		g[p], g[p+1] = hexPairs[2*v], hexPairs[2*v+1]
		v, p = int(lo>>(56-8*k)&0xff), guidLoPos[k]
		g[p], g[p+1] = hexPairs[2*v], hexPairs[2*v+1]
	}
	return append(b, g[:]...)
}

// appendAuditTime writes Unix second sec as CreationTime renders it,
// formatting the date only when it changes.
func (sc *auditScratch) appendAuditTime(b []byte, sec int64) []byte {
	day := sec / 86400
	if sec < 0 && sec%86400 != 0 {
		day--
	}
	if day != sc.day || sc.date == nil {
		sc.day = day
		sc.date = time.Unix(day*86400, 0).UTC().AppendFormat(sc.date[:0], "2006-01-02T")
	}
	b = append(b, sc.date...)
	s := int(sec - day*86400)
	for i, v := range [3]int{s / 3600, s / 60 % 60, s % 60} {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, byte('0'+v/10), byte('0'+v%10))
	}
	return b
}

// mix64 is the splitmix64 finaliser: a cheap, well-spread hash of x.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// draws is a splitmix64 sequence: the values of one record.
type draws uint64

func (d *draws) next() uint64 { *d += 0x9e3779b97f4a7c15; return mix64(uint64(*d)) }
func (d *draws) n(k int) int  { return int(d.next() % uint64(k)) }

// auditPerson is a simulated user; a user keeps its IDs across records.
type auditPerson struct {
	upn, puid, sid string
	hi, lo         uint64 // object ID
}

const (
	auditDomain    = "contoso.onmicrosoft.com"
	auditSharePath = "https://contoso.sharepoint.com/sites/"
)

var auditPeople = sync.OnceValue(func() []auditPerson {
	first := []string{"adele", "alex", "diego", "grady", "henrietta", "isaiah", "johanna", "joni", "lee", "lidia", "lynne", "megan", "miriam", "nestor", "patti", "pradeep"}
	last := []string{"vance", "wilber", "siciliani", "archie", "mueller", "langer", "lauer", "sherman", "gu", "holloway", "robbins", "bowen", "graham", "wilke", "fernandez", "gupta"}
	people := make([]auditPerson, 0, len(first)*len(last))
	for i, f := range first {
		for j, l := range last {
			d := draws(uint64(i*len(last)+j) * 0x5851f42d4c957f2d)
			people = append(people, auditPerson{
				upn:  f + "." + l + "@" + auditDomain,
				puid: "1003" + strconv.FormatUint(d.next()|1<<63, 16)[:12],
				sid:  "S-1-5-21-" + strconv.FormatUint(d.next()%4e9, 10) + "-" + strconv.FormatUint(d.next()%4e9, 10) + "-" + strconv.FormatUint(d.next()%4e9, 10) + "-" + strconv.Itoa(10000+i*len(last)+j),
				hi:   d.next(),
				lo:   d.next(),
			})
		}
	}
	return people
})

type auditOp struct {
	name       string
	recordType int
}

var (
	auditAADOps        = []auditOp{{"UserLoggedIn", 15}, {"UserLoggedIn", 15}, {"UserLoggedIn", 15}, {"UserLoginFailed", 15}, {"Add user.", 8}, {"Update user.", 8}, {"Add member to group.", 8}, {"Consent to application.", 8}}
	auditExchangeOps   = []auditOp{{"MailItemsAccessed", 50}, {"Send", 2}, {"Update", 2}, {"MoveToDeletedItems", 2}, {"Set-Mailbox", 1}, {"New-InboxRule", 1}}
	auditSharePointOps = []auditOp{{"FileAccessed", 6}, {"FileAccessed", 6}, {"FileModified", 6}, {"FileDownloaded", 6}, {"FileUploaded", 6}, {"SharingSet", 14}, {"PageViewed", 4}}
	auditTeamsOps      = []auditOp{{"MessageSent", 25}, {"MemberAdded", 25}, {"TeamsSessionStarted", 25}, {"ChannelAdded", 25}, {"MeetingParticipantDetail", 25}}
	auditDLPOps        = []auditOp{{"DlpRuleMatch", 11}, {"DlpRuleMatch", 11}, {"DlpRuleUndo", 11}, {"DlpRuleMatch", 13}}
	auditOpsByKind     = [...][]auditOp{kindAAD: auditAADOps, kindExchange: auditExchangeOps, kindSharePoint: auditSharePointOps, kindGeneral: auditTeamsOps, kindDLP: auditDLPOps}
	auditWorkloads     = [...]string{kindAAD: "AzureActiveDirectory", kindExchange: "Exchange", kindSharePoint: "SharePoint", kindGeneral: "MicrosoftTeams", kindDLP: "SharePoint"}

	auditUserAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
		"Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
		"OneDriveMpc-Transform_Thumbnail/1.0",
	}
	auditSites   = []string{"Finance", "Marketing", "Engineering", "HR", "Legal", "Sales"}
	auditFolders = []string{"Shared Documents", "Shared Documents/Projects", "Shared Documents/Reports/2026", "SitePages"}
	auditFiles   = []string{"Budget FY27.xlsx", "Roadmap.pptx", "Contract draft.docx", "Minutes.docx", "Notes.txt", "Home.aspx"}
	auditTeams   = []string{"Contoso Leadership", "Project Falcon", "IT Helpdesk", "Sales EMEA"}
	auditFolderX = []string{`\\Inbox`, `\\Sent Items`, `\\Deleted Items`, `\\Archive`}
	auditSubject = []string{"Quarterly numbers", "RE: Contract review", "Team offsite", "Invoice 4471", "FW: Security notice"}
	auditClients = []string{"Client=OWA;Action=ViaProxy", "Client=MSExchangeRPC", "Client=REST;Client=RESTSystem;;", "Client=Microsoft Outlook 16.0"}
	auditPolicy  = []string{"U.S. Financial Data", "GDPR Enhanced", "Credit Card Numbers"}
	auditInfo    = []string{"Credit Card Number", "EU Debit Card Number", "U.S. Social Security Number (SSN)", "IBAN"}
)

// appendIP writes an IPv4 address drawn from v.
func appendIP(b []byte, v uint64) []byte {
	b = strconv.AppendUint(b, 20+v%200, 10)
	for i := range 3 {
		b = append(b, '.')
		b = strconv.AppendUint(b, v>>(8*(i+1))&0xff, 10)
	}
	return b
}

// auditScratch holds the text pieces of one record while its members are
// written; it is reused across records.
type auditScratch struct {
	ip, tm, date []byte
	day          int64 // of date
}

// writeAuditRecord writes the members of a record of kind into fb: the
// compact set (Id, CreationTime, Operation, RecordType, Workload, UserId)
// or the full record. Every value comes from h, id, creation and tenant.
func writeAuditRecord(fb *auditFields, sc *auditScratch, kind int, h uint64, id []byte, creation int64, tenant string, compact bool) {
	d := draws(h)
	ops := auditOpsByKind[kind]
	op := ops[d.n(len(ops))]
	people := auditPeople()
	user := &people[d.n(len(people))]
	workload := auditWorkloads[kind]
	sc.tm = sc.appendAuditTime(sc.tm[:0], creation)
	if compact {
		strMember(fb, "Id", id)
		strMember(fb, "CreationTime", sc.tm)
		fb.str("Operation", op.name)
		fb.num("RecordType", op.recordType)
		fb.str("Workload", workload)
		fb.str("UserId", user.upn)
		return
	}
	sc.ip = appendIP(sc.ip[:0], d.next())
	ip := sc.ip
	failed := op.name == "UserLoginFailed"
	strMember(fb, "CreationTime", sc.tm)
	strMember(fb, "Id", id)
	fb.str("Operation", op.name)
	fb.str("OrganizationId", tenant)
	fb.num("RecordType", op.recordType)
	switch {
	case failed:
		fb.str("ResultStatus", "Failed")
	case kind == kindAAD:
		fb.str("ResultStatus", "Success")
	case op.recordType == 1:
		fb.str("ResultStatus", "True")
	case kind != kindGeneral:
		fb.str("ResultStatus", "Succeeded")
	}
	switch kind {
	case kindAAD:
		fb.guid("UserKey", user.hi, user.lo)
	case kindExchange:
		fb.str("UserKey", user.puid)
	default:
		fb.key("UserKey")
		fb.b = append(append(append(fb.b, `"i:0h.f|membership|`...), user.puid...), `@live.com"`...)
	}
	userType := 0
	if op.recordType == 1 || op.recordType == 8 {
		userType = 2
	}
	fb.num("UserType", userType)
	fb.num("Version", 1)
	fb.str("Workload", workload)
	if kind == kindDLP {
		fb.str("ClientIP", "")
	} else {
		strMember(fb, "ClientIP", ip)
	}
	site := auditSites[d.n(len(auditSites))]
	folder := auditFolders[d.n(len(auditFolders))]
	file := auditFiles[d.n(len(auditFiles))]
	switch kind {
	case kindAAD:
		target := &people[d.n(len(people))]
		if op.recordType == 15 {
			fb.str("ObjectId", "00000002-0000-0ff1-ce00-000000000000")
		} else {
			fb.str("ObjectId", target.upn)
		}
	case kindExchange:
		fb.str("ObjectId", user.upn)
	case kindSharePoint, kindDLP:
		fb.key("ObjectId")
		fb.b = append(append(append(append(append(append(fb.b, '"'), auditSharePath...), site...), '/'), folder...), '/')
		fb.b = append(append(fb.b, file...), '"')
	default:
		fb.str("ObjectId", auditTeams[d.n(len(auditTeams))])
	}
	fb.str("UserId", user.upn)

	b := &fb.b
	switch kind {
	case kindAAD:
		fb.num("AzureActiveDirectoryEventType", 1)
		fb.key("ExtendedProperties")
		*b = append(*b, `[{"Name":"ResultStatusDetail","Value":"`...)
		if failed {
			*b = append(*b, `Invalid username or password."},{"Name":"UserAgent","Value":"`...)
		} else {
			*b = append(*b, `Redirect"},{"Name":"UserAgent","Value":"`...)
		}
		*b = append(*b, auditUserAgents[d.n(len(auditUserAgents))]...)
		*b = append(*b, `"},{"Name":"RequestType","Value":"OAuth2:Authorize"}]`...)
		fb.raw("ModifiedProperties", "[]")
		fb.key("Actor")
		*b = append(*b, `[{"ID":"`...)
		*b = appendGUID(*b, user.hi, user.lo)
		*b = append(*b, `","Type":0},{"ID":"`...)
		*b = append(*b, user.upn...)
		*b = append(*b, `","Type":5}]`...)
		fb.str("ActorContextId", tenant)
		strMember(fb, "ActorIpAddress", ip)
		fb.guid("InterSystemsId", d.next(), d.next())
		fb.guid("IntraSystemId", d.next(), d.next())
		fb.str("SupportTicketId", "")
		fb.key("Target")
		*b = append(*b, `[{"ID":"`...)
		*b = appendGUID(*b, d.next(), d.next())
		*b = append(*b, `","Type":0}]`...)
		fb.str("TargetContextId", tenant)
		fb.guid("ApplicationId", d.next(), d.next())
		fb.raw("DeviceProperties", `[{"Name":"OS","Value":"Windows10"},{"Name":"BrowserType","Value":"Edge"},{"Name":"IsCompliantAndManaged","Value":"False"}]`)
		if failed {
			fb.str("ErrorNumber", "50126")
		} else {
			fb.str("ErrorNumber", "0")
		}
	case kindExchange:
		fb.str("AppId", "00000002-0000-0ff1-ce00-000000000000")
		fb.str("ClientAppId", "")
		strMember(fb, "ClientIPAddress", ip)
		fb.str("ClientInfoString", auditClients[d.n(len(auditClients))])
		fb.raw("ExternalAccess", "false")
		fb.num("InternalLogonType", 0)
		fb.num("LogonType", 0)
		fb.str("LogonUserSid", user.sid)
		fb.guid("MailboxGuid", user.lo, user.hi)
		fb.str("MailboxOwnerSid", user.sid)
		fb.str("MailboxOwnerUPN", user.upn)
		fb.str("OrganizationName", auditDomain)
		fb.key("OriginatingServer")
		fb.b = strconv.AppendInt(append(fb.b, `"AM0PR01MB`...), int64(1000+d.n(9000)), 10)
		fb.b = append(fb.b, ` (15.20.7544.000)"`...)
		if op.recordType == 1 {
			fb.key("Parameters")
			*b = append(*b, `[{"Name":"Identity","Value":"`...)
			*b = append(*b, user.upn...)
			*b = append(*b, `"},{"Name":"ForwardingSmtpAddress","Value":"smtp:archive@contoso.com"},{"Name":"DeliverToMailboxAndForward","Value":"True"}]`...)
		} else {
			fb.key("Item")
			*b = append(*b, `{"Id":"RgAAAAD`...)
			*b = strconv.AppendUint(*b, d.next(), 36)
			*b = append(*b, `AAAJ","InternetMessageId":"<`...)
			*b = strconv.AppendUint(*b, d.next(), 36)
			*b = append(*b, `@AM0PR01MB.eurprd01.prod.exchangelabs.com>","ParentFolder":{"Id":"LgAAAAD`...)
			*b = strconv.AppendUint(*b, d.next()>>20, 36)
			*b = append(*b, `AAB","Path":"`...)
			*b = append(*b, auditFolderX[d.n(len(auditFolderX))]...)
			*b = append(*b, `"},"SizeInBytes":`...)
			*b = strconv.AppendInt(*b, int64(2000+d.n(2000000)), 10)
			*b = append(*b, `,"Subject":"`...)
			*b = append(*b, auditSubject[d.n(len(auditSubject))]...)
			*b = append(*b, `"}`...)
		}
	case kindSharePoint:
		fb.key("AppAccessContext")
		*b = append(*b, `{"AADSessionId":"`...)
		*b = appendGUID(*b, d.next(), d.next())
		*b = append(*b, `","CorrelationId":"`...)
		*b = appendGUID(*b, d.next(), d.next())
		*b = append(*b, `","UniqueTokenId":"`...)
		*b = strconv.AppendUint(*b, d.next(), 36)
		*b = append(*b, `"}`...)
		fb.guid("CorrelationId", d.next(), d.next())
		fb.str("EventSource", "SharePoint")
		if op.recordType == 4 {
			fb.str("ItemType", "Page")
		} else {
			fb.str("ItemType", "File")
		}
		fb.guid("ListId", d.next(), d.next())
		fb.guid("ListItemUniqueId", d.next(), d.next())
		fb.guid("Site", mix64(uint64(len(site))), mix64(uint64(site[0])))
		fb.str("UserAgent", auditUserAgents[d.n(len(auditUserAgents))])
		fb.guid("WebId", mix64(uint64(site[1])), mix64(uint64(len(site)+1)))
		fb.str("GeoLocation", "EUR")
		fb.raw("IsManagedDevice", "false")
		fb.str("SourceFileExtension", file[strings.LastIndexByte(file, '.')+1:])
		fb.key("SiteUrl")
		fb.b = append(append(append(append(fb.b, '"'), auditSharePath...), site...), '/', '"')
		fb.str("SourceFileName", file)
		fb.str("SourceRelativeUrl", folder)
	case kindGeneral:
		fb.guid("AADGroupId", mix64(uint64(h%4)), mix64(uint64(h%4)+1))
		fb.str("CommunicationType", "Team")
		fb.key("Members")
		other := &people[d.n(len(people))]
		*b = append(*b, `[{"DisplayName":"`...)
		*b = append(*b, other.upn[:strings.IndexByte(other.upn, '@')]...)
		*b = append(*b, `","Role":1,"UPN":"`...)
		*b = append(*b, other.upn...)
		*b = append(*b, `"}]`...)
		team := auditTeams[h%uint64(len(auditTeams))]
		fb.str("TeamName", team)
		fb.key("TeamGuid")
		fb.b = strconv.AppendUint(append(fb.b, `"19:`...), mix64(uint64(len(team))), 16)
		fb.b = append(fb.b, `@thread.tacv2"`...)
		fb.str("ChannelName", "General")
		fb.str("ItemName", "General")
	case kindDLP:
		fb.guid("IncidentId", d.next(), d.next())
		fb.key("PolicyDetails")
		*b = append(*b, `[{"PolicyId":"`...)
		pol := d.n(len(auditPolicy))
		*b = appendGUID(*b, mix64(uint64(pol)), mix64(uint64(pol)+7))
		*b = append(*b, `","PolicyName":"`...)
		*b = append(*b, auditPolicy[pol]...)
		*b = append(*b, `","Rules":[{"Actions":["NotifyUser","BlockAccess"],"ConditionsMatched":{"ConditionMatchedInNewScheme":true,"SensitiveInformation":[{"Confidence":85,"Count":`...)
		*b = strconv.AppendInt(*b, int64(1+d.n(40)), 10)
		*b = append(*b, `,"SensitiveInformationTypeName":"`...)
		*b = append(*b, auditInfo[d.n(len(auditInfo))]...)
		*b = append(*b, `","SensitiveType":"`...)
		*b = appendGUID(*b, d.next(), d.next())
		*b = append(*b, `"}]},"RuleId":"`...)
		*b = appendGUID(*b, d.next(), d.next())
		*b = append(*b, `","RuleMode":"Enable","RuleName":"Low volume of content detected","Severity":"Low"}]}]`...)
		fb.raw("SensitiveInfoDetectionIsIncluded", "true")
		fb.key("SharePointMetaData")
		*b = append(*b, `{"FileName":"`...)
		*b = append(*b, file...)
		*b = append(*b, `","FileOwner":"`...)
		*b = append(*b, user.upn...)
		*b = append(*b, `","FilePathUrl":"`...)
		*b = append(append(append(*b, auditSharePath...), site...), '/')
		*b = append(*b, folder...)
		*b = append(*b, '/')
		*b = append(*b, file...)
		*b = append(*b, `","From":"`...)
		*b = append(*b, user.upn...)
		*b = append(*b, `","ItemCreationTime":"`...)
		*b = append(*b, sc.tm...)
		*b = append(*b, `","SiteCollectionUrl":"`...)
		*b = append(append(append(*b, auditSharePath...), site...), '/')
		*b = append(*b, `","UniqueID":"`...)
		*b = appendGUID(*b, d.next(), d.next())
		*b = append(*b, `"}`...)
	}
}
