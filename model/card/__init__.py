"""The model card, in one place: its schema, reading and writing (schema), the threshold maths from impostor
distances to decisions (curves) and its Markdown rendering (markdown). The service reads cards through
`ModelCard`; model.release writes them."""
