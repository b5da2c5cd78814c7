//! Output of `corelog topic`: aligned plain-text tables for people, JSON for scripts.

use serde_json::json;

use crate::client::topics::{ConfigEntry, TopicInfo};

/// Prints rows as columns separated by two spaces, each as wide as its widest cell.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn print_list(topics: &[TopicInfo], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        let list: Vec<_> = topics
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "id": t.id,
                    "partitions": t.partitions.len(),
                    "replicas": replication_factor(t),
                    "internal": t.internal,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.partitions.len().to_string(),
                replication_factor(t).to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "PARTITIONS", "REPLICAS"], &rows);
    Ok(())
}

fn replication_factor(topic: &TopicInfo) -> usize {
    topic.partitions.first().map_or(0, |p| p.replicas.len())
}

pub fn print_describe(
    topic: &TopicInfo,
    configs: &[ConfigEntry],
    all: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    if as_json {
        let value = json!({
            "name": topic.name,
            "id": topic.id,
            "internal": topic.internal,
            "partitions": topic.partitions,
            "configs": configs,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("SUMMARY");
    print_table(
        &["NAME", "ID", "PARTITIONS", "REPLICAS", "INTERNAL"],
        &[vec![
            topic.name.clone(),
            topic.id.clone().unwrap_or_else(|| "-".into()),
            topic.partitions.len().to_string(),
            replication_factor(topic).to_string(),
            topic.internal.to_string(),
        ]],
    );
    println!();
    println!("CONFIGS");
    let rows: Vec<Vec<String>> = configs
        .iter()
        .filter(|c| all || c.source == "DYNAMIC_TOPIC_CONFIG")
        .map(|c| {
            vec![
                c.name.clone(),
                c.value.clone().unwrap_or_else(|| "(null)".into()),
                c.source.to_string(),
            ]
        })
        .collect();
    print_table(&["KEY", "VALUE", "SOURCE"], &rows);
    println!();
    println!("PARTITIONS");
    let offset = |o: Option<i64>| o.map_or("-".to_string(), |o| o.to_string());
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.leader.to_string(),
                format!("{:?}", p.replicas),
                offset(p.log_start_offset),
                offset(p.high_watermark),
            ]
        })
        .collect();
    print_table(
        &[
            "PARTITION",
            "LEADER",
            "REPLICAS",
            "LOG-START-OFFSET",
            "HIGH-WATERMARK",
        ],
        &rows,
    );
    Ok(())
}
