//! Stamping the sender on a line before it is written to its receiver (`<NODE:sender `): the
//! head rewritten in place when the parameters are canonical (the hot path), else the line
//! parsed and written again as the C++ daemon writes it; lowercase commands, which the stock
//! daemon forwards between services, are written here.

use bytes::{BufMut, BytesMut};

use crate::canonical::is_canonical;
use cd_wire::raw::{validate_address, write_address, write_value};
use cd_wire::{is_valid_command, is_valid_name, parse, restamp_head, serialize, RouteHead};

/// Appends the stamped line (with `\n`) to `out`: [`restamp_head`] when the parameter text
/// is canonical (the hot path), else parse + stamp + serialize, so the receiver always gets
/// the bytes the C++ daemon would send. On error nothing is written.
pub(crate) fn stamp_line(
    node: &str,
    from: &str,
    head: &RouteHead<'_>,
    line: &[u8],
    out: &mut BytesMut,
) -> Result<(), String> {
    if !is_valid_command(head.command) {
        stamp_lowercase(node, from, head, line, out)?;
    } else if is_canonical(head.params) {
        restamp_head(head, node, from, out).map_err(|e| e.to_string())?;
    } else {
        let mut m = parse(line).map_err(|e| e.to_string())?;
        m.sent_from_server = node.to_owned();
        m.sent_from_service = from.to_owned();
        serialize(&m, out).map_err(|e| e.to_string())?;
    }
    out.put_u8(b'\n');
    Ok(())
}

/// A command with lowercase letters (`[A-Za-z_][A-Za-z0-9_]*`): the stock daemon forwards it
/// as it is between services (`d2/ping x=lower`), so the router does too. cd_wire's
/// serializer only writes `[A-Z_][A-Z0-9_]*` (the comms API's rule for what it sends), so the
/// line is written here: stamp, checked address, the command, the parameters (verbatim when
/// canonical, else parsed and re-written as the C++ does).
fn stamp_lowercase(
    node: &str,
    from: &str,
    head: &RouteHead<'_>,
    line: &[u8],
    out: &mut BytesMut,
) -> Result<(), String> {
    if !is_valid_name(head.command) {
        return Err(format!(
            "invalid command {:?}: must match [A-Za-z_][A-Za-z0-9_]*",
            head.command
        ));
    }
    validate_address("server", head.server).map_err(|e| e.to_string())?;
    validate_address("service", head.service).map_err(|e| e.to_string())?;
    if !is_valid_name(node) || !(from.is_empty() || is_valid_name(from)) {
        return Err("invalid sender stamp".to_owned());
    }
    let mut body = BytesMut::new();
    if is_canonical(head.params) {
        body.put_slice(head.params);
    } else {
        let m = parse(line).map_err(|e| e.to_string())?;
        for (i, (k, v)) in m.params.iter().enumerate() {
            if i > 0 {
                body.put_u8(b';');
            }
            body.put_slice(k.as_bytes());
            body.put_u8(b'=');
            write_value(v, &mut body);
        }
    }
    out.put_u8(b'<');
    out.put_slice(node.as_bytes());
    out.put_u8(b':');
    out.put_slice(from.as_bytes());
    out.put_u8(b' ');
    write_address(head.server, head.service, head.command, out);
    if !body.is_empty() {
        out.put_u8(b' ');
        out.put_slice(&body);
    }
    Ok(())
}
