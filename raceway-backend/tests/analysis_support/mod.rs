//! Builders for analysis tests: traces recorded the way the SDKs record them (clocks ticked per event,
//! forked on spawn, merged on join, call and response).
#![allow(dead_code)]

use std::sync::Arc;

use raceway::clock_header::ClockStatus;
use raceway::event::{Callee, HttpInfo, TraceparentStatus, Upstream};
use raceway::{
    Access, Event, EventKind, HeldLock, LockMode, SpanId, SpanKind, Timestamp, VectorClock,
};
use uuid::Uuid;

/// Base timestamp: 2026-11-25T13:00:00Z.
pub const T0: i64 = 1_795_611_600_000_000_000;

pub struct Thread {
    pub trace: Uuid,
    pub span: SpanId,
    pub parent: Option<SpanId>,
    pub thread_id: Arc<str>,
    pub service: Arc<str>,
    pub instance: Arc<str>,
    pub seq: u64,
    pub clock: VectorClock,
    pub locks: Vec<HeldLock>,
    pub children: u32,
    pub operation: String,
    pub last: Option<usize>,
}

/// Records events; `now` advances by `step` ns per event unless set with [`Tb::at`].
pub struct Tb {
    pub events: Vec<Event>,
    pub threads: Vec<Thread>,
    pub now: i64,
    pub step: i64,
    next_id: u64,
}

pub type Th = usize;

pub fn sid(n: u64) -> SpanId {
    SpanId((n + 1).to_be_bytes())
}

pub fn tid(n: u64) -> Uuid {
    Uuid::from_u64_pair(0x4bf9_2f35_77b3_4da6, n + 1)
}

impl Default for Tb {
    fn default() -> Self {
        Tb::new()
    }
}

impl Tb {
    pub fn new() -> Self {
        Tb {
            events: Vec::new(),
            threads: Vec::new(),
            now: T0,
            step: 1_000_000,
            next_id: 1,
        }
    }

    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn at(&mut self, ns: i64) -> &mut Self {
        self.now = ns;
        self
    }

    pub fn own_key(&self, th: Th) -> String {
        let t = &self.threads[th];
        format!("{}#{}", t.service, t.instance)
    }

    /// Records an event on `th`; returns its index.
    pub fn emit(&mut self, th: Th, kind: EventKind) -> usize {
        self.emit_loc(th, kind, None)
    }

    pub fn emit_loc(&mut self, th: Th, kind: EventKind, location: Option<&str>) -> usize {
        let key = self.own_key(th);
        let id = self.fresh();
        let ts = self.now;
        self.now += self.step;
        let t = &mut self.threads[th];
        t.clock.tick(&key);
        let e = Event {
            id: Uuid::from_u64_pair(0xe0e0, id),
            trace_id: t.trace,
            span_id: t.span,
            parent_span_id: t.parent,
            thread_id: t.thread_id.clone(),
            seq: t.seq,
            service: t.service.clone(),
            instance: t.instance.clone(),
            timestamp: Timestamp(ts),
            duration_ns: None,
            vector_clock: t.clock.clone(),
            locks_held: t.locks.clone(),
            location: location.map(Arc::from),
            tags: Default::default(),
            kind,
        };
        t.seq += 1;
        self.events.push(e);
        t.last = Some(self.events.len() - 1);
        self.events.len() - 1
    }

    #[allow(clippy::too_many_arguments)]
    fn new_thread(
        &mut self,
        trace: Uuid,
        span: SpanId,
        parent: Option<SpanId>,
        thread_id: String,
        service: &str,
        instance: &str,
        clock: VectorClock,
        op: &str,
    ) -> Th {
        self.threads.push(Thread {
            trace,
            span,
            parent,
            thread_id: thread_id.into(),
            service: service.into(),
            instance: instance.into(),
            seq: 0,
            clock,
            locks: Vec::new(),
            children: 0,
            operation: op.to_string(),
            last: None,
        });
        self.threads.len() - 1
    }

    /// A root server span (no upstream).
    pub fn root(&mut self, trace: Uuid, service: &str, instance: &str, op: &str) -> Th {
        let span = sid(self.fresh());
        let th = self.new_thread(
            trace,
            span,
            None,
            span.to_string(),
            service,
            instance,
            VectorClock::new(),
            op,
        );
        self.start(
            th,
            SpanKind::Server,
            TraceparentStatus::Absent,
            ClockStatus::Absent,
        );
        th
    }

    fn start(
        &mut self,
        th: Th,
        kind: SpanKind,
        tp: TraceparentStatus,
        clock: ClockStatus,
    ) -> usize {
        let op = self.threads[th].operation.clone();
        self.emit(
            th,
            EventKind::SpanStart {
                operation: op.clone(),
                span_kind: kind,
                http: Some(HttpInfo {
                    method: "GET".into(),
                    route: Some(op.clone()),
                    target: op,
                }),
                upstream: Some(Upstream {
                    traceparent: tp,
                    clock,
                }),
            },
        )
    }

    /// `outbound_call` from `caller`; returns the call id.
    pub fn call(&mut self, caller: Th) -> SpanId {
        let x = sid(self.fresh());
        self.emit(
            caller,
            EventKind::OutboundCall {
                child_span_id: x,
                protocol: "http".into(),
                method: Some("GET".into()),
                url: None,
            },
        );
        x
    }

    /// The callee's server span for call `x` (clock merged, same trace).
    pub fn serve(&mut self, caller: Th, x: SpanId, service: &str, instance: &str, op: &str) -> Th {
        let span = sid(self.fresh());
        let trace = self.threads[caller].trace;
        let clock = self.threads[caller].clock.clone();
        let th = self.new_thread(
            trace,
            span,
            Some(x),
            span.to_string(),
            service,
            instance,
            clock,
            op,
        );
        self.start(
            th,
            SpanKind::Server,
            TraceparentStatus::Valid,
            ClockStatus::Ok,
        );
        th
    }

    /// The callee's server span after the request headers were lost: a new trace, no parent, no clock.
    pub fn serve_lost(&mut self, new_trace: Uuid, service: &str, instance: &str, op: &str) -> Th {
        let span = sid(self.fresh());
        let th = self.new_thread(
            new_trace,
            span,
            None,
            span.to_string(),
            service,
            instance,
            VectorClock::new(),
            op,
        );
        self.start(
            th,
            SpanKind::Server,
            TraceparentStatus::Absent,
            ClockStatus::Absent,
        );
        th
    }

    /// Ends a span (http_response then span_end); returns the response clock (taken before span_end).
    pub fn end(&mut self, th: Th) -> VectorClock {
        self.emit(th, EventKind::HttpResponse { status: 200 });
        let clock = self.threads[th].clock.clone();
        let op = self.threads[th].operation.clone();
        self.emit(
            th,
            EventKind::SpanEnd {
                operation: op,
                status_code: Some(200),
                error: false,
            },
        );
        clock
    }

    /// Caller receives the response of call `x` from `callee` (which must have ended).
    pub fn respond(
        &mut self,
        caller: Th,
        x: SpanId,
        callee: Th,
        response_clock: &VectorClock,
    ) -> usize {
        let c = &self.threads[callee];
        let callee_ref = Callee {
            trace_id: c.trace,
            span_id: c.span,
            service: Some(c.service.to_string()),
            instance: Some(c.instance.to_string()),
        };
        self.threads[caller].clock.merge(response_clock);
        self.emit(
            caller,
            EventKind::OutboundResponse {
                child_span_id: x,
                status: Some(200),
                error: None,
                callee: Some(callee_ref),
            },
        )
    }

    /// A whole synchronous call: call, serve (running `body` in the callee), end, respond.
    pub fn sync_call(
        &mut self,
        caller: Th,
        service: &str,
        instance: &str,
        op: &str,
        body: impl FnOnce(&mut Tb, Th),
    ) -> Th {
        let x = self.call(caller);
        let callee = self.serve(caller, x, service, instance, op);
        body(self, callee);
        let rc = self.end(callee);
        self.respond(caller, x, callee, &rc);
        callee
    }

    pub fn spawn(&mut self, th: Th) -> Th {
        self.threads[th].children += 1;
        let name = format!(
            "{}.{}",
            self.threads[th].thread_id, self.threads[th].children
        );
        self.emit(
            th,
            EventKind::AsyncSpawn {
                child_thread_id: name.clone().into(),
            },
        );
        let t = &self.threads[th];
        let (trace, span, parent, service, instance, clock, op) = (
            t.trace,
            t.span,
            t.parent,
            t.service.to_string(),
            t.instance.to_string(),
            t.clock.clone(),
            t.operation.clone(),
        );
        self.new_thread(trace, span, parent, name, &service, &instance, clock, &op)
    }

    pub fn join(&mut self, th: Th, child: Th) -> usize {
        let c = self.threads[child].clock.clone();
        let name = self.threads[child].thread_id.clone();
        self.threads[th].clock.merge(&c);
        self.emit(
            th,
            EventKind::AsyncAwait {
                child_thread_id: name,
            },
        )
    }

    pub fn access(&mut self, th: Th, var: &str, access: Access, loc: Option<&str>) -> usize {
        self.emit_loc(
            th,
            EventKind::StateChange {
                variable: var.into(),
                access,
                old_value: None,
                new_value: None,
            },
            loc,
        )
    }

    pub fn write(&mut self, th: Th, var: &str) -> usize {
        self.access(th, var, Access::Write, None)
    }

    pub fn read(&mut self, th: Th, var: &str) -> usize {
        self.access(th, var, Access::Read, None)
    }

    pub fn acquire(&mut self, th: Th, lock: &str, mode: LockMode) -> usize {
        self.threads[th].locks.push(HeldLock {
            lock: lock.into(),
            mode,
        });
        self.emit(
            th,
            EventKind::LockAcquire {
                lock: lock.into(),
                mode,
            },
        )
    }

    pub fn release(&mut self, th: Th, lock: &str) -> usize {
        let mode = self.threads[th]
            .locks
            .iter()
            .find(|l| &*l.lock == lock)
            .map(|l| l.mode)
            .unwrap_or(LockMode::Exclusive);
        let i = self.emit(
            th,
            EventKind::LockRelease {
                lock: lock.into(),
                mode,
            },
        );
        self.threads[th].locks.retain(|l| &*l.lock != lock);
        i
    }

    pub fn func(&mut self, th: Th, name: &str) -> usize {
        self.emit(
            th,
            EventKind::FunctionCall {
                function: name.into(),
                module: None,
            },
        )
    }
}
