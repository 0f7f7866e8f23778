//! The webhook relay against a real PostgreSQL, the real sandbox provider and a real HTTP
//! receiver on 127.0.0.1.

mod inbound;
mod outbound;
mod support;
