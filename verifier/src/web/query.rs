//! The pages' query strings (`?at=…&state=fail&page=2`, `?id=…&before=…`):
//! form-decoded, each value checked, unknown keys ignored, the last of a
//! repeated key kept. A value that does not parse is a 400 naming it.

use super::load::{FleetQuery, NodeQuery};
use super::view::Standing;

/// Highest page number accepted (past the last page shows the last page).
const MAX_PAGE: usize = 1_000_000;

fn pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.trim().to_string()))
}

fn at(v: &str) -> Result<Option<i64>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    super::dates::parse_utc(v)
        .map(Some)
        .map_err(|e| format!("at: {e}"))
}

pub fn fleet(query: Option<&str>) -> Result<FleetQuery, String> {
    let mut q = FleetQuery {
        page: 1,
        ..Default::default()
    };
    for (k, v) in pairs(query) {
        match k.as_str() {
            "at" => q.at_unix = at(&v)?,
            "state" if v.is_empty() => q.filter = None,
            "state" => {
                q.filter = Some(Standing::parse(&v).ok_or_else(|| {
                    format!(
                        "state `{}`: pass, fail, stale or unknown",
                        v.chars().take(20).collect::<String>()
                    )
                })?)
            }
            "page" => {
                q.page = v
                    .parse::<usize>()
                    .map_err(|_| "page: a number from 1".to_string())?
                    .clamp(1, MAX_PAGE)
            }
            _ => {}
        }
    }
    Ok(q)
}

pub fn node(query: Option<&str>) -> Result<NodeQuery, String> {
    let mut q = NodeQuery::default();
    for (k, v) in pairs(query) {
        match k.as_str() {
            "id" => {
                crate::service::validate_node_id(&v).map_err(|e| e.to_string())?;
                q.node_id = v;
            }
            "at" => q.at_unix = at(&v)?,
            "before" if v.is_empty() => q.before_seq = None,
            "before" => {
                q.before_seq = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| "before: a record number from 1".to_string())?,
                )
            }
            _ => {}
        }
    }
    if q.node_id.is_empty() {
        return Err("id: which node (`/node?id=NODE`)".into());
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_queries_are_checked() {
        assert_eq!(
            fleet(None).unwrap(),
            FleetQuery {
                page: 1,
                ..Default::default()
            }
        );
        let q = fleet(Some("at=2024-05-03+14%3A00%3A00&state=fail&page=3&x=y")).unwrap();
        assert_eq!(q.at_unix, Some(1_714_744_800));
        assert_eq!(q.filter, Some(Standing::Fail));
        assert_eq!(q.page, 3);
        assert_eq!(fleet(Some("page=0&at=&state=")).unwrap().page, 1);
        for bad in [
            "state=broken",
            "page=-1",
            "at=tomorrow",
            "page=99999999999999999999999",
        ] {
            assert!(fleet(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_queries_take_a_valid_node_id() {
        let q = node(Some("id=node-7&before=12")).unwrap();
        assert_eq!(q.node_id, "node-7");
        assert_eq!(q.before_seq, Some(12));
        for bad in [
            "",
            "id=",
            "id=..",
            "id=a%2Fb",
            "id=%3Cscript%3E",
            "id=n1&before=0",
            "id=n1&before=x",
        ] {
            assert!(node(Some(bad)).is_err(), "{bad}");
        }
    }
}
